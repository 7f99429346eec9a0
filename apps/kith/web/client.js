// kith's HTTP API client: a dependency-free ES module for any web page that
// talks to a kith node (API.md documents every route; "Write your own web
// app on kith" in API.md shows it in use).
//
// Two ways to reach a node:
//
// - The node's own page (served by `kith serve`): `createClient()` calls
//   `/api/...` on the page's own origin; the access token travels in the
//   HttpOnly cookie the node set when its page URL was opened, so nothing
//   here handles the secret.
// - A page on any other origin: `pair(node)` asks the node to let this
//   origin in (the person approves it on the node with the code it shows),
//   then `createClient({ node, token })` sends `Authorization: Bearer
//   TOKEN` with every call. The token belongs to this origin alone and the
//   node answers it only from this origin.
//
// Nothing is cached here: every call goes to the node.

/**
 * An answer with an error status, or no answer. `status` is the HTTP status
 * (0: the node did not answer), `code` the API's snake_case code.
 */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    /** @type {number} */
    this.status = status;
    /** @type {string} */
    this.code = code;
  }
}

/**
 * @typedef {object} ClientOptions
 * @property {string} [node] The node's address (`http://127.0.0.1:7780`); omitted: the page's own origin.
 * @property {string} [token] This origin's token from {@link pair}; omitted: the node's cookie (its own page).
 * @property {typeof fetch} [fetch] The fetch to use (default: the global one).
 */

/**
 * @typedef {object} Attachment
 * @property {string} name
 * @property {string} media_type
 * @property {number} size
 * @property {string} url An `/api/entry/...` route; read it with `client.blob(url)` or `client.mediaUrl(url)`.
 */

/**
 * @typedef {object} Comment
 * @property {string} id
 * @property {string} author Namespace id.
 * @property {string} author_name
 * @property {string|null} author_avatar
 * @property {string} text
 * @property {number} time Microseconds since the Unix epoch.
 * @property {boolean} [loading] Its text was purged from the cache of friends' data and is being fetched again (`text` is empty).
 */

/**
 * @typedef {object} CacheStatus What of friends' data the node keeps.
 * @property {number} budget Bytes kept at most; the least recently written or read beyond it are purged.
 * @property {number|null} max_age Seconds without a write or read after which friends' data is purged too, or null.
 * @property {number} documents
 * @property {number} document_bytes
 * @property {number} blobs
 * @property {number} blob_bytes
 * @property {number} bytes
 * @property {{ documents: number, blobs: number, bytes: number }} [purged] What the call purged.
 */

/**
 * @typedef {object} Post
 * @property {string} id
 * @property {string} author Namespace id.
 * @property {string} author_name
 * @property {string|null} author_avatar
 * @property {'friends'|'close'|'me'} audience
 * @property {string} path
 * @property {string} text
 * @property {number} time Microseconds since the Unix epoch.
 * @property {boolean} mine
 * @property {Attachment[]} attachments
 * @property {Comment[]} comments
 * @property {boolean} [loading] Its text was purged from the cache of friends' data and is being fetched again from its author (`text` is empty): read it again with `postsWithId`.
 */

/**
 * @typedef {object} Deletion
 * @property {string} id
 * @property {string} prefix
 * @property {number} time
 * @property {number} confirmed Devices that confirmed with a signed receipt.
 * @property {number} total Devices that were served data under the prefix.
 * @property {{ namespace: string, name: string, device: string, confirmed_at: number|null }[]} devices
 */

/**
 * @typedef {object} Friend
 * @property {string} namespace
 * @property {string} name
 * @property {string|null} nickname
 * @property {string|null} avatar
 * @property {string[]} prefixes What this node granted them.
 * @property {string[]} shared_with_me What they granted this node.
 */

/**
 * @typedef {object} KithEvent
 * @property {'entry'|'receipt'|'friend'} kind
 * @property {any} data The event's JSON (API.md, "Sync and events").
 */

/**
 * @typedef {object} EventStream
 * @property {() => void} close Stops following.
 */

/** `base` without a trailing slash; '' for the page's own origin. */
function baseOf(node) {
  if (!node) return '';
  let url;
  try {
    url = new URL(node);
  } catch {
    throw new ApiError(0, 'bad_node', `${node} is not an address like http://127.0.0.1:7780`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ApiError(0, 'bad_node', `${node} is not an http:// or https:// address`);
  }
  return url.origin;
}

const seg = (s) => encodeURIComponent(s);

/** Turns an error answer into an ApiError. */
async function errorOf(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || 'request failed';
  try {
    const e = await res.json();
    if (e && typeof e.error === 'string') message = e.error;
    if (e && typeof e.code === 'string') code = e.code;
  } catch {
    // Not JSON: keep the status text.
  }
  return new ApiError(res.status, code, message);
}

/**
 * A client for one node.
 *
 * @param {ClientOptions} [options]
 */
export function createClient(options = {}) {
  const base = baseOf(options.node);
  const token = options.token || null;
  const doFetch = options.fetch || ((...args) => fetch(...args));
  /** Blob URLs made for media of this client, by API route. */
  const media = new Map();

  /** Headers every call carries. */
  const headers = (extra) => {
    const out = { Accept: 'application/json', ...extra };
    if (token) out.Authorization = 'Bearer ' + token;
    return out;
  };

  /** One request; resolves to the Response when its status is 2xx. */
  async function request(method, path, init = {}) {
    let res;
    try {
      res = await doFetch(base + path, {
        method,
        // The node's own page signs in with its cookie; another origin with its token only.
        credentials: token ? 'omit' : 'same-origin',
        ...init,
        headers: headers(init.headers),
      });
    } catch {
      throw new ApiError(0, 'unreachable', base
        ? `kith at ${base} is not answering, or has not approved this site`
        : 'kith is not answering (is `kith serve` still running?)');
    }
    if (!res.ok) {
      const err = await errorOf(res);
      if (res.status === 401 && !token) {
        err.message = 'Not signed in: open the page URL that `kith serve` printed (it carries the token).';
      }
      throw err;
    }
    return res;
  }

  /** A JSON call; with `contentType`, `body` (a Blob) is sent as it is. */
  async function call(method, path, body, contentType) {
    const init = { headers: {} };
    if (contentType !== undefined) {
      init.headers['Content-Type'] = contentType;
      init.body = body;
    } else if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await request(method, path, init);
    if (res.status === 204) return null;
    const type = res.headers.get('content-type') || '';
    return type.includes('json') ? res.json() : res.text();
  }

  return {
    /** The node's address ('' for the page's own origin). */
    node: base,
    /** Whether calls carry a token (a page on another origin). */
    paired: Boolean(token),
    /** Any route: `call('GET', '/api/id')`. Resolves to the JSON answer (null for 204). */
    call,

    /** @returns {Promise<{ namespace: string, device: string, name: string, avatar: string|null, limits: { text_bytes: number } }>} */
    id: () => call('GET', '/api/id'),
    /** @returns {Promise<{ ticket: string }>} */
    ticket: () => call('GET', '/api/ticket'),
    /** @returns {Promise<Friend[]>} */
    friends: () => call('GET', '/api/friends'),
    /** @returns {Promise<any>} Devices and how they are reached (API.md, `GET /api/status`). */
    status: () => call('GET', '/api/status'),
    /**
     * @param {string} ticket
     * @param {string} [name]
     * @returns {Promise<Friend>}
     */
    addFriend: (ticket, name) => call('POST', '/api/friends', name ? { ticket, name } : { ticket }),
    /** @param {string} friend A name or namespace id. */
    removeFriend: (friend) => call('DELETE', '/api/friends/' + seg(friend)),
    /**
     * Lets `friend` read everything under `prefix`.
     * @param {string} friend
     * @param {string} prefix
     * @param {string} [expires] `"30d"`, `"12h"` …
     */
    grant: (friend, prefix, expires) => call('POST', '/api/grants', expires ? { friend, prefix, expires } : { friend, prefix }),
    /**
     * Revokes `friend`'s grants at or under `prefix`; `del`: also ask their devices to delete what they got.
     * @param {string} friend
     * @param {string} prefix
     * @param {boolean} del
     * @returns {Promise<{ revoked: string[], deletion: string|null, deletions: string[] }>}
     */
    revoke: (friend, prefix, del) => call('POST', '/api/revoke', { friend, prefix, delete: del }),

    /**
     * One page of entries of a namespace (`me`, a friend's name or id) under `prefix`.
     * @param {string} ns
     * @param {{ prefix?: string, after?: string, limit?: number }} [query]
     * @returns {Promise<{ entries: { path: string, kind: 'doc'|'blob', size: number, media_type?: string, hash?: string, time: number, device: string }[], next: string|null }>}
     */
    entries: (ns, query = {}) => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
      const qs = q.toString();
      return call('GET', '/api/entries/' + seg(ns) + (qs ? '?' + qs : ''));
    },
    /**
     * A document as JSON (`ns`: `me`, a friend's name or id; `path`: `/notes/a`).
     * @param {string} ns
     * @param {string} path
     */
    doc: (ns, path) => call('GET', '/api/entry/' + seg(ns) + pathUrl(path)),
    /**
     * Writes a JSON object as the document at `path` of the own namespace.
     * @param {string} path
     * @param {object} value
     * @returns {Promise<{ path: string, kind: string }>}
     */
    putDoc: (path, value) => call('PUT', '/api/entry' + pathUrl(path), value),
    /**
     * Writes a blob (its type is the Content-Type) at `path` of the own namespace.
     * @param {string} path
     * @param {Blob} blob
     */
    putBlob: (path, blob) => call('PUT', '/api/entry' + pathUrl(path), blob, blob.type || 'application/octet-stream'),
    /**
     * Deletes everything at or under `path`; `remote`: also ask friends' devices to.
     * @param {string} path
     * @param {boolean} [remote]
     * @returns {Promise<{ deletion: string }>}
     */
    deleteEntry: (path, remote = false) => call('DELETE', '/api/entry' + pathUrl(path) + (remote ? '?remote=true' : '')),
    /**
     * The bytes at an API route such as an attachment's `url`.
     * @param {string} url An `/api/...` route.
     * @returns {Promise<Blob>}
     */
    blob: async (url) => (await request('GET', apiRoute(url))).blob(),
    /**
     * A URL an `<img>` can show for an API route: the route itself on the
     * node's own page (the cookie signs it in), else a `blob:` URL of its
     * bytes, fetched with the token (kept until `forgetMedia`).
     * @param {string} url
     * @returns {Promise<string>}
     */
    mediaUrl: async (url) => {
      const route = apiRoute(url);
      if (!token) return base + route;
      if (!media.has(route)) {
        const made = request('GET', route).then(async (res) => URL.createObjectURL(await res.blob()));
        media.set(route, made);
        made.catch(() => media.delete(route));
      }
      return media.get(route);
    },
    /** Frees the `blob:` URLs `mediaUrl` made. */
    forgetMedia: () => {
      for (const made of media.values()) made.then((u) => URL.revokeObjectURL(u), () => {});
      media.clear();
    },

    /**
     * One page of the timeline; pass `next` as `before` for the page after it.
     * @param {number} limit 1–500
     * @param {string|null} [before]
     * @returns {Promise<{ posts: Post[], next: string|null }>}
     */
    feed: (limit, before) => call('GET', '/api/feed?limit=' + limit + (before ? '&before=' + seg(before) : '')),
    /**
     * The posts with this id (own and friends': one per author who has one).
     * @param {string} id
     * @returns {Promise<{ posts: Post[] }>}
     */
    postsWithId: (id) => call('GET', '/api/feed/posts/' + seg(id)),
    /**
     * @param {string} text
     * @param {'friends'|'close'|'me'} audience
     * @param {{ name: string, media_type: string, data: string }[]} [attachments] `data` in base64 ({@link base64Of}).
     * @returns {Promise<Post>}
     */
    post: (text, audience, attachments = []) => call('POST', '/api/feed/posts', { text, audience, attachments }),
    /**
     * Deletes an own post here and on friends' devices; follow its receipts with `deletion(id)`.
     * @param {string} id
     * @returns {Promise<{ deletion: string }>}
     */
    deletePost: (id) => call('DELETE', '/api/feed/posts/' + seg(id)),
    /**
     * @param {string} author The post's author (`me`, a name or namespace id).
     * @param {string} id The post's id.
     * @param {string} text
     */
    comment: (author, id, text) => call('POST', '/api/feed/comments', { post: { author, id }, text }),
    /** @returns {Promise<CacheStatus>} */
    cache: () => call('GET', '/api/cache'),
    /**
     * Sets the cache's budget and age (a field left out keeps its value), purging what no longer fits.
     * @param {{ budget?: string|number, max_age?: string|number|null }} settings `"500MB"` or bytes; `"365d"`, seconds or null.
     * @returns {Promise<CacheStatus>}
     */
    setCache: (settings) => call('PUT', '/api/cache', settings),
    /**
     * Purges all friends' documents and blobs kept here; they are fetched again from their owners when read.
     * @returns {Promise<CacheStatus>}
     */
    purgeCache: () => call('POST', '/api/cache/purge'),
    profile: () => call('GET', '/api/profile'),
    /** @param {{ name?: string, bio?: string }} profile */
    saveProfile: (profile) => call('PUT', '/api/profile', profile),
    /**
     * Sets the profile picture: the file itself is the body, its type the Content-Type.
     * @param {Blob} file
     */
    setAvatar: (file) => call('PUT', '/api/profile/avatar', file, file.type || 'application/octet-stream'),
    /**
     * Deletes the profile picture, here and on friends' devices.
     * @returns {Promise<{ deletion: string }>}
     */
    removeAvatar: () => call('DELETE', '/api/profile/avatar'),
    /** @returns {Promise<Deletion[]>} */
    deletions: () => call('GET', '/api/deletions'),
    /**
     * @param {string} id
     * @returns {Promise<Deletion>}
     */
    deletion: (id) => call('GET', '/api/deletions/' + seg(id)),
    /** Syncs with a friend's devices now. @param {string} friend */
    sync: (friend) => call('POST', '/api/sync/' + seg(friend)),

    /**
     * The web origins allowed to use the node, and the pairing requests
     * waiting (only for the node's own page and the CLI, never a paired site).
     * @returns {Promise<{ origins: { origin: string, added_ms: number }[], pending: { origin: string, code: string, expires_in_s: number }[] }>}
     */
    webOrigins: () => call('GET', '/api/web/origins'),
    /**
     * Approves the pairing request of `origin` that shows `code`.
     * @param {string} origin
     * @param {string} code
     */
    allowOrigin: (origin, code) => call('POST', '/api/web/origins', { origin, code }),
    /** Takes back an origin's token at once. @param {string} origin */
    revokeOrigin: (origin) => call('DELETE', '/api/web/origins?origin=' + seg(origin)),

    /**
     * Follows the node's server-sent events (`/api/events`). `onEvent`
     * gets every event, and `{ kind: 'open' }` each time the stream
     * (re)opens, since events sent while it was closed are lost; `onState`
     * reports whether the stream is open. It reconnects after a drop
     * (backing off to 10 s) until `close()`; an answer of 401 or 403 (the
     * token was revoked) ends it, with `onState(false, error)`.
     *
     * @param {(event: KithEvent | { kind: 'open' }) => void} onEvent
     * @param {(open: boolean, error?: ApiError) => void} [onState]
     * @returns {EventStream}
     */
    events(onEvent, onState = () => {}) {
      let closed = false;
      let controller = null;
      let delay = 500;
      const run = async () => {
        while (!closed) {
          controller = new AbortController();
          try {
            const res = await request('GET', '/api/events', {
              headers: { Accept: 'text/event-stream' },
              signal: controller.signal,
            });
            delay = 500;
            onState(true);
            onEvent({ kind: 'open' });
            await readEvents(res.body, onEvent);
          } catch (err) {
            if (closed) return;
            if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
              onState(false, err);
              return;
            }
          }
          if (closed) return;
          onState(false);
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 10_000);
        }
      };
      run();
      return {
        close() {
          closed = true;
          if (controller) controller.abort();
        },
      };
    },
  };
}

/** `/a/b c` as URL path segments (`/a/b%20c`). */
function pathUrl(path) {
  return String(path).split('/').filter((c) => c !== '').map(seg).map((c) => '/' + c).join('');
}

/** The route part of an `/api/...` URL (refuses anything else: no request leaves for another site). */
function apiRoute(url) {
  if (typeof url !== 'string' || !url.startsWith('/api/')) {
    throw new ApiError(0, 'bad_url', `${url} is not an /api/ route`);
  }
  return url;
}

/** Reads a `text/event-stream` body, calling `onEvent` per complete event. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) kind = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length === 0) continue; // a comment (keep-alive)
      let parsed = null;
      try {
        parsed = JSON.parse(data.join('\n'));
      } catch {
        parsed = data.join('\n');
      }
      onEvent({ kind, data: parsed });
    }
    if (buffer.length > 1 << 20) throw new ApiError(0, 'bad_stream', 'an event of over 1 MiB');
  }
}

/**
 * @typedef {object} Pairing
 * @property {string} code The code to show: the person checks it on the node and approves it.
 * @property {string} origin This page's origin, as the node saw it.
 * @property {number} expires_ms When the request lapses (ms since the Unix epoch).
 * @property {(options?: { signal?: AbortSignal, intervalMs?: number }) => Promise<string>} approved
 *   Resolves to this origin's token once the person approved the code on the node
 *   (`kith web allow ORIGIN --code CODE`, or the node's own page); rejects when the
 *   request is refused or lapses.
 */

/**
 * Asks the node at `node` to let this page's origin in. Show `code` to the
 * person, then await `approved()` for the token and keep it (in this
 * origin's storage): `createClient({ node, token })`.
 *
 * @param {string} node The node's address, e.g. `http://127.0.0.1:7780`.
 * @param {{ fetch?: typeof fetch }} [options]
 * @returns {Promise<Pairing>}
 */
export async function pair(node, options = {}) {
  const base = baseOf(node);
  const doFetch = options.fetch || ((...args) => fetch(...args));
  const post = async (path, body) => {
    let res;
    try {
      res = await doFetch(base + path, {
        method: 'POST',
        credentials: 'omit',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, 'unreachable', `kith at ${base} is not answering (is \`kith serve\` running there?)`);
    }
    if (res.status === 202) return null;
    if (!res.ok) throw await errorOf(res);
    return res.json();
  };
  const asked = await post('/api/pair', {});
  return {
    code: asked.code,
    origin: asked.origin,
    expires_ms: asked.expires_ms,
    async approved({ signal, intervalMs = 1000 } = {}) {
      for (;;) {
        if (signal && signal.aborted) throw new ApiError(0, 'aborted', 'pairing stopped');
        const answer = await post('/api/pair/claim', { request: asked.request });
        if (answer && answer.token) return answer.token;
        await new Promise((resolve) => setTimeout(resolve, intervalMs));
      }
    },
  };
}

/**
 * Whether the node at `node` answers and whether it approved this page's
 * origin (`{ approved }`), without a token: how a page tells "the node is
 * down" from "this site is not (or no longer) allowed".
 *
 * @param {string} node
 * @returns {Promise<{ approved: boolean } | null>} null when the node does not answer.
 */
export async function pairingState(node) {
  try {
    const res = await fetch(baseOf(node) + '/api/pair', { credentials: 'omit', headers: { Accept: 'application/json' } });
    if (!res.ok) return null;
    const body = await res.json();
    return { approved: Boolean(body && body.approved) };
  } catch {
    return null;
  }
}

/**
 * Reads a File as base64 (no `data:` prefix), as the post route wants.
 * @param {Blob} file
 * @returns {Promise<string>}
 */
export function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      resolve(url.slice(url.indexOf(',') + 1));
    };
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}
