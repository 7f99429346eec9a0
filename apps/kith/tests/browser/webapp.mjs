// The feed as an installable web app, on the node's own origin and hosted
// on another one, in Debian's chromium, as tests/browser.rs asks:
//
//   node webapp.mjs <kith> <aliceData> <aliceHttp> <bobData> <siteDir> <screenshotDir>
//
// Alice and bob are friends; alice's daemon is stopped, and this script
// runs it (`kith serve --http <aliceHttp>`), stops it and starts it again.
//
// 1. On alice's own page: the manifest and service worker pass chromium's
//    installability checks (no `Page.getInstallabilityErrors`); a deletion
//    shows its receipts; screenshots of the feed, the friends view and the
//    receipts, desktop and a 390 px wide phone.
// 2. With the daemon stopped, a reload shows the page with the last
//    timeline it read, marked offline; a post deleted while the daemon was
//    down leaves that timeline once the daemon answers again.
// 3. The exported page (<siteDir>) served by a static server here on a
//    second origin: the node refuses it before pairing; the page pairs (the
//    code it shows is approved with `kith web allow ORIGIN --code CODE`),
//    posts, shows bob's post live; after `kith web revoke ORIGIN` it is
//    refused again and says so. It pairs again through the node's own page
//    ("Apps on other sites": the waiting code, Allow), which revokes it too.
//
// Every wait is one of playwright's waiting calls with a timeout; no fixed
// sleeps. Exit status 0 means every step passed.

import { chromium } from 'playwright-core';
import { spawn, execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join, normalize } from 'node:path';
import { createInterface } from 'node:readline';

const [kith, aliceData, aliceHttp, bobData, siteDir, shots] = process.argv.slice(2);
if (!shots) {
  console.error('usage: node webapp.mjs <kith> <aliceData> <aliceHttp> <bobData> <siteDir> <screenshotDir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const LIVE_MS = Number(process.env.KITH_BROWSER_TIMEOUT_MS || 60_000);
const LOCAL_MS = 15_000;
const CHROMIUM = process.env.KITH_CHROMIUM || '/usr/bin/chromium';

let step = 'start';
const log = (msg) => console.log(`[webapp.mjs] ${msg}`);
function begin(name) {
  step = name;
  log(name);
}

/** Runs `kith --data DATA ARGS…` and resolves to its standard output. */
function run(data, args) {
  return new Promise((resolve, reject) => {
    execFile(kith, ['--data', data, ...args], { timeout: LIVE_MS }, (err, stdout, stderr) => {
      if (err) reject(new Error(`kith ${args.join(' ')} failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Alice's daemon, while it runs. */
let daemon = null;

/** Starts `kith serve` for alice and resolves to its page URL (with the token). */
function startAlice() {
  return new Promise((resolve, reject) => {
    const child = spawn(kith, ['--data', aliceData, 'serve', '--local-only', '--http', aliceHttp, '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, KITH_RESYNC_SECS: '2' },
    });
    daemon = child;
    const timer = setTimeout(() => reject(new Error('kith serve printed nothing')), LIVE_MS);
    const lines = createInterface({ input: child.stdout });
    let first = true;
    lines.on('line', (line) => {
      if (!first) return;
      first = false;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line).url);
      } catch {
        reject(new Error(`kith serve printed ${line}`));
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (first) reject(new Error(`kith serve exited with ${code}`));
    });
  });
}

/** Stops alice's daemon as Ctrl-C would and waits until it has exited. */
function stopAlice() {
  const child = daemon;
  daemon = null;
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('kith serve did not stop')), LIVE_MS);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
};

/** A static web server for `dir` on 127.0.0.1 (any port): what any web host does. */
function staticServer(dir) {
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
    let file = join(dir, path);
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      const body = readFileSync(file);
      res.writeHead(200, { 'Content-Type': TYPES[extname(file)] || 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end('not found');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

// A profile on disk (not an incognito context): chromium does not offer to
// install apps from incognito windows.
const profile = mkdtempSync(join(tmpdir(), 'kith-webapp-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-quic',
    '--no-first-run',
    '--disable-component-update',
    '--disable-sync',
  ],
  locale: 'en-US',
  viewport: { width: 1280, height: 900 },
  deviceScaleFactor: 1,
});

const problems = [];
const pages = {};
let failed = false;
let site = null;

function watch(who, page) {
  page.on('pageerror', (err) => problems.push(`${who}: page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') log(`${who} console: ${msg.text()}`);
  });
  pages[who] = page;
}

async function shot(who, name) {
  const page = pages[who];
  if (page) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** The same screenshot of the whole page, desktop and phone (390 px wide). */
async function shots2(who, name) {
  const page = pages[who];
  // From the top: the sticky header then sits where it belongs.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.setViewportSize({ width: 1280, height: 900 });
  await shot(who, `${name}-desktop`);
  await page.setViewportSize({ width: 390, height: 844 });
  await shot(who, `${name}-phone`);
  await page.setViewportSize({ width: 1280, height: 900 });
}

try {
  begin("alice's daemon starts and her page opens");
  const url = await startAlice();
  const origin = new URL(url).origin;
  const alice = await context.newPage();
  watch('alice', alice);
  await alice.goto(url);
  await alice.getByRole('textbox', { name: 'Post text' }).waitFor({ timeout: LOCAL_MS });

  begin('the page is installable: manifest and service worker pass chromium\'s checks');
  await alice.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  // A page is controlled by its service worker from the next load on.
  await alice.reload();
  await alice.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: LOCAL_MS });
  const cdp = await context.newCDPSession(alice);
  // The browser fetches the manifest and icons on its own: ask until it
  // has no objection left, for at most LOCAL_MS.
  for (const deadline = Date.now() + LOCAL_MS; ;) {
    const answer = await cdp.send('Page.getInstallabilityErrors');
    const errors = answer.installabilityErrors || [];
    if (errors.length === 0) break;
    if (Date.now() > deadline) throw new Error(`not installable: ${JSON.stringify(errors)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const manifest = await cdp.send('Page.getAppManifest');
  if (!manifest.url || !manifest.url.endsWith('/manifest.webmanifest')) {
    throw new Error(`no manifest found: ${JSON.stringify(manifest)}`);
  }

  begin('alice posts, and deletes a post whose receipt comes back from bob');
  const keep = `Seen before going offline ${Date.now().toString(36)}`;
  const gone = `Deleted while offline ${Date.now().toString(36)}`;
  const receipted = `Taken back at once ${Date.now().toString(36)}`;
  for (const text of [receipted, gone, keep]) {
    await alice.getByRole('textbox', { name: 'Post text' }).fill(text);
    await alice.getByRole('button', { name: 'Post', exact: true }).click();
    await alice.getByRole('article').filter({ hasText: text }).waitFor({ timeout: LOCAL_MS });
  }
  await shots2('alice', 'webapp-feed');
  const receiptedPost = alice.getByRole('article').filter({ hasText: receipted });
  await receiptedPost.getByRole('button', { name: 'Delete post' }).click();
  await receiptedPost.getByRole('button', { name: 'Confirm delete' }).click();
  await receiptedPost.waitFor({ state: 'detached', timeout: LOCAL_MS });
  await alice.getByText("Deleted on 1 of 1 friends' devices").first().waitFor({ timeout: LIVE_MS });
  // Who confirmed, and when.
  await alice.locator('#deletions summary').first().click();
  await alice.locator('#deletions .devices').getByText(/bob · device .* · confirmed/).first().waitFor({ timeout: LOCAL_MS });
  await shots2('alice', 'webapp-receipts');
  await alice.getByRole('button', { name: 'Friends', exact: true }).click();
  await alice.getByRole('group', { name: 'bob can read' }).waitFor({ timeout: LOCAL_MS });
  await alice.getByRole('textbox', { name: 'My ticket' }).waitFor({ timeout: LOCAL_MS });
  await shots2('alice', 'webapp-friends');
  await alice.getByRole('button', { name: 'Feed', exact: true }).click();

  begin('with the daemon stopped, a reload shows the last timeline, marked offline');
  const goneId = await alice.evaluate(async (text) => {
    const page = await (await fetch('/api/feed?limit=50')).json();
    const post = page.posts.find((p) => p.text === text);
    return post ? post.path : null;
  }, gone);
  if (!goneId) throw new Error('the post to delete is not in the feed');
  await stopAlice();
  await alice.reload();
  await alice.getByText(/^Offline: kith is not answering/).waitFor({ timeout: LOCAL_MS });
  await alice.getByRole('article').filter({ hasText: keep }).waitFor({ timeout: LOCAL_MS });
  await alice.getByRole('article').filter({ hasText: gone }).waitFor({ timeout: LOCAL_MS });
  if (!(await alice.getByRole('textbox', { name: 'Post text' }).isDisabled())) {
    throw new Error('the composer takes posts while offline');
  }
  await shot('alice', 'webapp-offline');

  begin('a post deleted meanwhile leaves the saved timeline once the daemon answers');
  await run(aliceData, ['rm', goneId]);
  await startAlice();
  await alice.getByRole('article').filter({ hasText: gone }).waitFor({ state: 'detached', timeout: LIVE_MS });
  await alice.getByText(/^Offline: kith is not answering/).waitFor({ state: 'hidden', timeout: LIVE_MS });
  await alice.getByRole('article').filter({ hasText: keep }).waitFor({ timeout: LOCAL_MS });
  const saved = await alice.evaluate(() => Object.keys(localStorage)
    .filter((k) => k.startsWith('kith.timeline'))
    .map((k) => localStorage.getItem(k)).join('\n'));
  if (saved.includes(gone)) throw new Error('the saved timeline still holds the deleted post');
  if (!saved.includes(keep)) throw new Error('the saved timeline lost a post that is still there');

  begin('the exported page on a second origin is refused before pairing');
  site = await staticServer(siteDir);
  const siteOrigin = `http://127.0.0.1:${site.address().port}`;
  const app = await context.newPage();
  watch('app', app);
  await app.goto(`${siteOrigin}/?node=${encodeURIComponent(origin)}`);
  await app.getByRole('heading', { name: 'Connect to your kith' }).waitFor({ timeout: LOCAL_MS });
  const refused = await app.evaluate(async (node) => {
    try {
      await fetch(node + '/api/id');
      return 'answered';
    } catch (e) {
      return 'refused';
    }
  }, origin);
  if (refused !== 'refused') throw new Error('the node answered an origin it never approved');
  await shot('app', 'webapp-site-connect');

  begin('the page pairs: the code it shows is approved on the node');
  if ((await app.getByLabel("Your node's address").inputValue()) !== origin) {
    throw new Error('the node address from ?node= is not filled in');
  }
  await app.getByRole('button', { name: 'Connect', exact: true }).click();
  const codeEl = app.locator('#pair-code');
  await codeEl.waitFor({ timeout: LOCAL_MS });
  const code = (await codeEl.textContent()).trim();
  const command = (await app.locator('#pair-command').textContent()).trim();
  if (command !== `kith web allow ${siteOrigin} --code ${code}`) throw new Error(`the page says to run ${command}`);
  await shot('app', 'webapp-site-code');
  await run(aliceData, ['web', 'allow', siteOrigin, '--code', code]);
  await app.getByRole('textbox', { name: 'Post text' }).waitFor({ timeout: LIVE_MS });
  await app.getByRole('article').filter({ hasText: keep }).waitFor({ timeout: LIVE_MS });
  const listed = await run(aliceData, ['status']);
  if (!listed.includes(siteOrigin)) throw new Error(`kith status does not list ${siteOrigin}: ${listed}`);

  begin('the paired page posts, and shows a friend\'s post live');
  const fromSite = `Posted from another site ${Date.now().toString(36)}`;
  await app.getByRole('textbox', { name: 'Post text' }).fill(fromSite);
  await app.getByRole('button', { name: 'Post', exact: true }).click();
  await app.getByRole('article').filter({ hasText: fromSite }).waitFor({ timeout: LOCAL_MS });
  await alice.getByRole('article').filter({ hasText: fromSite }).waitFor({ timeout: LIVE_MS });
  await app.getByText('Live', { exact: true }).waitFor({ timeout: LIVE_MS });
  await app.evaluate(() => { window.kithNoReload = true; });
  const fromBob = `Bob says hello ${Date.now().toString(36)}`;
  await run(bobData, ['feed', 'post', fromBob]);
  await app.getByRole('article').filter({ hasText: fromBob }).waitFor({ timeout: LIVE_MS });
  if (!(await app.evaluate(() => window.kithNoReload === true))) throw new Error('the paired page reloaded');
  await shots2('app', 'webapp-site-feed');

  begin('after kith web revoke the page is refused and says so');
  await run(aliceData, ['web', 'revoke', siteOrigin]);
  await app.getByText(/does not \(or no longer\) allow this site/).waitFor({ timeout: LIVE_MS });
  await app.getByRole('heading', { name: 'Connect to your kith' }).waitFor({ timeout: LOCAL_MS });
  const left = await app.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('kith.')));
  if (left.length) throw new Error(`the revoked page still keeps ${left.join(', ')}`);
  if ((await app.locator('#timeline article').count()) !== 0) throw new Error('the revoked page still shows posts');
  await shot('app', 'webapp-site-revoked');

  begin("the page pairs again, approved on the node's own page, and is revoked there");
  await app.getByRole('button', { name: 'Connect', exact: true }).click();
  await codeEl.waitFor({ timeout: LOCAL_MS });
  const again = (await codeEl.textContent()).trim();
  await alice.getByRole('button', { name: 'Friends', exact: true }).click();
  await alice.getByRole('button', { name: `Allow ${siteOrigin} with the code ${again}` }).click({ timeout: LIVE_MS });
  await app.getByRole('article').filter({ hasText: keep }).waitFor({ timeout: LIVE_MS });
  await alice.getByRole('list', { name: 'Sites allowed' }).getByText(siteOrigin).waitFor({ timeout: LOCAL_MS });
  await shots2('alice', 'webapp-apps');
  await alice.getByRole('button', { name: `Revoke ${siteOrigin}` }).click();
  await alice.getByRole('button', { name: `Confirm revoke ${siteOrigin}` }).click();
  await app.getByText(/does not \(or no longer\) allow this site/).waitFor({ timeout: LIVE_MS });
  await alice.getByText('No site is allowed to use your kith.').waitFor({ timeout: LOCAL_MS });

  if (problems.length) throw new Error(problems.join('\n'));
  log('all steps passed');
} catch (err) {
  failed = true;
  console.error(`[webapp.mjs] FAILED at step "${step}": ${err && err.stack ? err.stack : err}`);
  for (const p of problems) console.error(`[webapp.mjs] ${p}`);
  for (const who of Object.keys(pages)) {
    try {
      await shot(who, `webapp-failure-${who}`);
    } catch (e) {
      console.error(`[webapp.mjs] no failure screenshot for ${who}: ${e.message}`);
    }
  }
} finally {
  await context.close();
  if (site) site.close();
  await stopAlice().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
