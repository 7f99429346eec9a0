// The page's service worker: it keeps the app shell (the page's own files,
// the list below) so the page opens when the node does not answer, and
// nothing else. Requests to the API (`/api/...` here, or a paired node on
// another origin) never touch it: their answers are never cached, so what
// the node deleted is never served from here. The last timeline the page
// read is kept by the page itself (app.js, "offline") and replaced by every
// read that succeeds.
//
// Each file is fetched from the network first (a new version of kith serves
// new files at once) and from the cache only when that fails.

const CACHE = 'kith-shell-v1';
const SHELL = [
  './',
  './index.html',
  './app.js',
  './client.js',
  './dom.js',
  './style.css',
  './favicon.svg',
  './manifest.webmanifest',
  './icons/icon-192.png',
  './icons/icon-512.png',
  './icons/maskable-512.png',
];
const SHELL_URLS = new Set(SHELL.map((path) => new URL(path, self.registration.scope).href));

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  // Only the shell's own files; a query string (`/?token=`) goes to the network as it is.
  if (request.method !== 'GET' || url.search || !SHELL_URLS.has(url.origin + url.pathname)) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const answer = await fetch(request);
      if (answer.ok && answer.type === 'basic') await cache.put(url.href, answer.clone());
      return answer;
    } catch (err) {
      const cached = await cache.match(url.href);
      if (cached) return cached;
      throw err;
    }
  })());
});
