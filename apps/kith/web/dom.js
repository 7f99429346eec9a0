// Small DOM helpers. Everything a friend wrote reaches the page through
// text nodes and attributes set here, never through innerHTML.

/** Creates an element: `h('button', { type: 'button', onclick }, 'Text')`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key in el && typeof value !== 'string') {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : value);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A kith time (microseconds since the Unix epoch) as a Date. */
export const dateOf = (micros) => new Date(Number(micros) / 1000);

/** "just now", "5 min ago", "3 h ago", then a date. */
export function relativeTime(micros, now = Date.now()) {
  const date = dateOf(micros);
  const secs = Math.round((now - date.getTime()) / 1000);
  if (secs < 45) return 'just now';
  if (secs < 3600) return Math.round(secs / 60) + ' min ago';
  if (secs < 86400) return Math.round(secs / 3600) + ' h ago';
  const sameYear = date.getFullYear() === new Date(now).getFullYear();
  return date.toLocaleDateString(undefined, sameYear
    ? { day: 'numeric', month: 'short' }
    : { day: 'numeric', month: 'short', year: 'numeric' });
}

/** A `<time>` element showing the relative time, full date on hover. */
export function timeEl(micros) {
  const date = dateOf(micros);
  const valid = !Number.isNaN(date.getTime());
  return h('time', {
    datetime: valid ? date.toISOString() : undefined,
    title: valid ? date.toLocaleString() : undefined,
    dataset: { micros: String(micros) },
  }, valid ? relativeTime(micros) : '');
}

/** The first letter of a name (or id) for the avatar circle. */
export function initial(name) {
  const first = [...String(name || '?').trim()][0] || '?';
  return first.toUpperCase();
}

/** A stable hue from an id, so each friend keeps one avatar colour. */
export function hueOf(id) {
  let n = 0;
  for (const c of String(id)) n = (n * 31 + c.charCodeAt(0)) % 360;
  return n;
}

/** Shortens a 52-character id for display: first and last few characters. */
export const shortId = (id) => (id && id.length > 14 ? id.slice(0, 6) + '…' + id.slice(-4) : id || '');

/** Whether a server-given URL is one of ours (a friend cannot point us elsewhere). */
export const isLocalApiUrl = (url) => typeof url === 'string' && url.startsWith('/api/');

/** Human-readable byte size. */
export function sizeText(bytes) {
  const n = Number(bytes) || 0;
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(0) + ' KB';
  return (n / 1024 / 1024).toFixed(1) + ' MB';
}
