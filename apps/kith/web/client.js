// The page's only door to the daemon: JSON calls to /api/... and the live
// event stream. The access token travels in the HttpOnly cookie the server
// set when the page was first opened, so nothing here handles secrets.

/** An answer with an error status; `code` is the API's snake_case code. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A JSON call; with `contentType`, `body` (a Blob) is sent as it is. */
async function call(method, path, body, contentType) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (contentType !== undefined) {
    init.headers['Content-Type'] = contentType;
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'unreachable', 'kith is not answering (is `kith serve` still running?)');
  }
  if (!res.ok) {
    let code = 'http_' + res.status;
    let message = res.statusText || 'request failed';
    try {
      const e = await res.json();
      if (e && typeof e.error === 'string') message = e.error;
      if (e && typeof e.code === 'string') code = e.code;
    } catch {
      // Not JSON: keep the status text.
    }
    if (res.status === 401) {
      message = 'Not signed in: open the page URL that `kith serve` printed (it carries the token).';
    }
    throw new ApiError(res.status, code, message);
  }
  if (res.status === 204) return null;
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

const seg = (s) => encodeURIComponent(s);

/** Every route the page uses, one function each (see API.md). */
export const api = {
  id: () => call('GET', '/api/id'),
  ticket: () => call('GET', '/api/ticket'),
  friends: () => call('GET', '/api/friends'),
  status: () => call('GET', '/api/status'),
  addFriend: (ticket, name) => call('POST', '/api/friends', name ? { ticket, name } : { ticket }),
  removeFriend: (friend) => call('DELETE', '/api/friends/' + seg(friend)),
  grant: (friend, prefix) => call('POST', '/api/grants', { friend, prefix }),
  revoke: (friend, prefix, del) => call('POST', '/api/revoke', { friend, prefix, delete: del }),
  /** One page of the timeline: `{ posts, next }`; pass `next` as `before` for the page after it. */
  feed: (limit, before) => call('GET', '/api/feed?limit=' + limit + (before ? '&before=' + seg(before) : '')),
  post: (text, audience, attachments) => call('POST', '/api/feed/posts', { text, audience, attachments }),
  deletePost: (id) => call('DELETE', '/api/feed/posts/' + seg(id)),
  comment: (author, id, text) => call('POST', '/api/feed/comments', { post: { author, id }, text }),
  profile: () => call('GET', '/api/profile'),
  saveProfile: (profile) => call('PUT', '/api/profile', profile),
  /** Sets the profile picture: the file itself is the body, its type the Content-Type. */
  setAvatar: (file) => call('PUT', '/api/profile/avatar', file, file.type || 'application/octet-stream'),
  deletions: () => call('GET', '/api/deletions'),
  sync: (friend) => call('POST', '/api/sync/' + seg(friend)),
};

/**
 * Follows `/api/events`. `onChange(kind)` runs for every event (`entry`,
 * `receipt`, `friend`) and once each time the stream (re)opens, since events
 * sent while it was closed are lost. `onState(live)` reports the connection.
 * EventSource reconnects by itself after a drop.
 */
export function follow(onChange, onState) {
  const source = new EventSource('/api/events');
  source.addEventListener('open', () => {
    onState(true);
    onChange('open');
  });
  source.addEventListener('error', () => onState(source.readyState === EventSource.OPEN));
  for (const kind of ['entry', 'receipt', 'friend', 'message']) {
    source.addEventListener(kind, () => onChange(kind));
  }
  return source;
}

/** Reads a File as base64 (no data: prefix), as the post route wants. */
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
