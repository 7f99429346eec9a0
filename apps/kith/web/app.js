// The kith feed page: timeline, composer, comments, friends and grants,
// deletions with their receipts. State comes from the daemon's HTTP API
// (API.md); the page re-reads the feed and the deletions whenever the event
// stream says something changed, and keeps what the user is typing. The
// timeline is read in pages: the newest first, older ones as the reader
// scrolls down to the end of the list (or presses "Show older posts").

import { createClient, pair, pairingState, base64Of } from './client.js';
import { h, timeEl, relativeTime, initial, hueOf, shortId, isLocalApiUrl, sizeText } from './dom.js';

/**
 * The client of the node this page shows: the node that served it (cookie),
 * or, on another origin, the node it was paired with (token). Set in `start`.
 */
let api = null;

/** Audiences as the composer offers them, with the prefix each maps to (see the feed module). */
const AUDIENCES = [
  { value: 'friends', label: 'Friends', prefix: '/feed/friends' },
  { value: 'close', label: 'Close friends', prefix: '/feed/close' },
  { value: 'me', label: 'Only me', prefix: '/private' },
];
/** Other prefixes a friend is granted, in words. */
const OTHER_PREFIXES = { '/profile': 'your profile', '/feed/comments': 'your comments' };

/** Whether `path` is `prefix` or lies under it (prefixes end at a `/`). */
const under = (path, prefix) => path === prefix || prefix === '/'
  || path.startsWith(prefix.endsWith('/') ? prefix : prefix + '/');
/** The audiences a friend can be granted (never "only me"). */
const SHAREABLE = AUDIENCES.filter((a) => a.value !== 'me');
const audienceLabel = (value) => (AUDIENCES.find((a) => a.value === value) || { label: value }).label;

/** Biggest attachment the page will send in one post (the API answers 413 above its own limit). */
const MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024;
/** Biggest profile picture the API takes (feed::MAX_AVATAR_SIZE). */
const MAX_AVATAR_BYTES = 2 * 1024 * 1024;

const $ = (sel) => document.querySelector(sel);

const state = {
  me: null,
  friends: [],
  /** Other devices as GET /api/status sees them. */
  peers: [],
  /** Files chosen in the composer, not yet posted. */
  files: [],
  /** What the page knew of its own posts it deleted, by deletion id (memory only). */
  deletedPosts: new Map(),
  /** Rendered posts by `author/id`: { el, sig, commentsSig }. */
  posts: new Map(),
  firstFeed: true,
  /** The timeline as read so far, newest first, and how many posts of it to keep reading. */
  feedPosts: [],
  wanted: 0,
  /** Where the next older page starts (the last page's `next`); null at the end. */
  next: null,
  /** The deletions as last read. */
  deletions: [],
  /** Reads again of loading posts, by `author/id`, and the timer of the next. */
  loadingTries: new Map(),
  loadingTimer: null,
  /** Ids of deletions whose device list the person opened: kept open across re-renders. */
  openDeletions: new Set(),
  /** The node does not answer: the saved timeline is shown (see "offline"). */
  offline: false,
};

/** Posts per page of the timeline (the API allows 1 to 500). */
const PAGE_SIZE = 20;
/** Largest page the API answers. */
const MAX_PAGE = 500;

// ---------------------------------------------------------------- notices

function showError(err) {
  const notice = $('#notice');
  notice.replaceChildren(
    h('span', {}, err && err.message ? err.message : String(err)),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss message', onclick: () => { notice.hidden = true; } }, 'Dismiss'),
  );
  notice.hidden = false;
}

function clearError() {
  $('#notice').hidden = true;
}

/** Announces a short message to screen readers. */
function announce(text) {
  $('#live').textContent = text;
}

/** Runs an action for a button: disables it meanwhile, reports errors. */
async function busy(button, action) {
  if (button) button.disabled = true;
  try {
    await action();
    clearError();
  } catch (err) {
    showError(err);
  } finally {
    if (button) button.disabled = false;
  }
}

// ------------------------------------------------------------------ views

function showView(name) {
  const friends = name === 'friends';
  $('#view-feed').hidden = friends;
  $('#view-friends').hidden = !friends;
  for (const [id, on] of [['#tab-feed', !friends], ['#tab-friends', friends]]) {
    const tab = $(id);
    if (on) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  const hash = friends ? '#friends' : '#feed';
  if (location.hash !== hash) history.replaceState(null, '', hash);
  if (friends) loadFriendsView().catch(showError);
}

// ------------------------------------------------------------ live refresh

let refreshTimer = null;
let refreshing = false;
let refreshAgain = false;
let friendsDirty = false;

/** Coalesces bursts of events into one re-read of feed and deletions. */
function scheduleRefresh(kind) {
  if (kind === 'web') {
    if (!$('#view-friends').hidden) loadApps().catch(showError);
    return;
  }
  if (kind === 'friend' || kind === 'open') friendsDirty = true;
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 60);
}

async function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return;
  }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      await loadFeed();
      if (friendsDirty && !$('#view-friends').hidden) {
        friendsDirty = false;
        await loadFriends();
      }
    } while (refreshAgain);
  } catch (err) {
    if (!(await connectionLost(err))) showError(err);
    // 503: the daemon is still building its timeline index; ask again soon.
    if (err && err.status === 503) setTimeout(() => scheduleRefresh('retry'), 2000);
  } finally {
    refreshing = false;
  }
}

function setConnection(live) {
  const conn = $('#conn');
  conn.textContent = live ? 'Live' : (state.offline ? 'Offline' : 'Reconnecting…');
  conn.classList.toggle('off', !live);
}

/** The event stream opened or closed; closed on a paired page: is the site still approved? */
function streamState(open, err) {
  setConnection(open);
  if (!open) connectionLost(err || { status: 0, message: 'the event stream closed' }).catch(() => {});
}

// ---------------------------------------------------------------- offline

/**
 * The last timeline this page read, kept in this origin's own storage (no
 * other site can read it) and replaced by every read that succeeds, so a
 * post deleted meanwhile leaves it as soon as the node answers again. The
 * API's answers themselves are never cached (sw.js caches only the page's
 * files).
 */
const TIMELINE_KEY = 'kith.timeline.v1';
/** Posts kept for offline reading. */
const OFFLINE_POSTS = 100;

const timelineKey = () => TIMELINE_KEY + ':' + (api.node || location.origin);

function saveTimeline(posts, deletions) {
  try {
    localStorage.setItem(timelineKey(), JSON.stringify({
      saved_ms: Date.now(), me: state.me, posts: posts.slice(0, OFFLINE_POSTS), deletions,
    }));
  } catch {
    // Storage full or turned off: nothing is kept for offline reading.
  }
}

function forgetTimeline() {
  try {
    localStorage.removeItem(timelineKey());
  } catch {
    // Nothing was kept.
  }
}

function savedTimeline() {
  try {
    const saved = JSON.parse(localStorage.getItem(timelineKey()));
    return saved && Array.isArray(saved.posts) ? saved : null;
  } catch {
    return null;
  }
}

/** Shows (a time in ms) or hides (null) the offline banner; offline, nothing can be changed. */
function setOffline(savedMs) {
  state.offline = savedMs !== null;
  const banner = $('#offline');
  document.body.classList.toggle('offline', state.offline);
  for (const el of document.querySelectorAll('#composer textarea, #composer button, #composer select, #composer input')) {
    el.disabled = state.offline;
  }
  if (!state.offline) {
    if (!banner.hidden) {
      banner.hidden = true;
      updatePostCount();
    }
    return;
  }
  const when = savedMs ? ` as last seen ${relativeTime(savedMs * 1000)}` : '';
  banner.textContent = `Offline: kith is not answering. This is your timeline${when}; it updates when kith is back.`;
  banner.hidden = false;
}

/** The node does not answer: show the last timeline read, marked offline. */
function goOffline() {
  const saved = savedTimeline();
  if (state.feedPosts.length === 0 && saved) {
    if (!state.me && saved.me) {
      state.me = saved.me;
      $('#me-name').textContent = saved.me.name || shortId(saved.me.namespace);
    }
    state.next = null;
    renderFeed(saved.posts, Array.isArray(saved.deletions) ? saved.deletions : []);
  }
  setOffline(saved ? saved.saved_ms : 0);
  setConnection(false);
}

/**
 * After a failed call: offline (the node does not answer) or, on a paired
 * page, no longer approved (then the pairing and the saved timeline are
 * forgotten). Returns whether it handled `err`.
 */
async function connectionLost(err) {
  if (!err || (err.status !== 0 && err.status !== 401 && err.status !== 403)) return false;
  if (api.paired) {
    const pairing = await pairingState(api.node);
    if (pairing && !pairing.approved) {
      unpaired('Your kith node does not (or no longer) allow this site. Connect again to approve it.');
      return true;
    }
    if (pairing && err.status === 401) {
      unpaired('Your kith node no longer accepts this site\'s token. Connect again to approve it.');
      return true;
    }
  }
  if (err.status === 0) {
    goOffline();
    return true;
  }
  return false;
}

// ------------------------------------------------------------------- feed

/** One read of the timeline at a time: a refresh and a scroll never interleave. */
let feedTurn = Promise.resolve();
function inTurn(work) {
  const run = feedTurn.then(work);
  feedTurn = run.catch(() => {});
  return run;
}

/** One page: its posts and the cursor after it (null at the end). */
async function feedPage(limit, before) {
  const page = await api.feed(limit, before);
  return {
    posts: Array.isArray(page && page.posts) ? page.posts : [],
    next: page && typeof page.next === 'string' ? page.next : null,
  };
}

/** Re-reads the timeline from the top, as many posts as are shown (at least a page). */
function loadFeed() {
  return inTurn(async () => {
    const wanted = Math.max(state.wanted, PAGE_SIZE);
    // New posts push the shown ones down: read on until the oldest one shown
    // is in again (or a page more than was shown, if it was deleted).
    const oldest = state.feedPosts.length ? state.feedPosts[state.feedPosts.length - 1] : null;
    const isOldest = (p) => oldest && p.author === oldest.author && p.id === oldest.id;
    const deletions = api.deletions();
    // Read beside the pages; if a page fails first, its failure is the one reported.
    deletions.catch(() => {});
    let posts = [];
    let next = null;
    let reached = !oldest;
    do {
      const page = await feedPage(Math.min(Math.max(wanted - posts.length, PAGE_SIZE), MAX_PAGE), next);
      posts = posts.concat(page.posts);
      next = page.next;
      reached = reached || page.posts.some(isOldest);
    } while (next && (posts.length < wanted || (!reached && posts.length < wanted + PAGE_SIZE)));
    const dels = await deletions;
    state.deletions = Array.isArray(dels) ? dels : [];
    state.feedPosts = posts;
    state.wanted = wanted;
    state.next = next;
    setOffline(null);
    saveTimeline(posts, state.deletions);
    renderFeed(posts, state.deletions);
  });
}

/** Reads the next older page and adds it at the end. */
function loadOlder() {
  return inTurn(async () => {
    if (!state.next) return;
    const page = await feedPage(PAGE_SIZE, state.next);
    state.feedPosts = state.feedPosts.concat(page.posts);
    state.wanted = state.feedPosts.length;
    state.next = page.next;
    renderFeed(state.feedPosts, state.deletions, true);
    if (page.posts.length) announce(`${page.posts.length} older posts`);
  });
}

/** Loads older posts when the end of the list comes into view; the button does the same. */
function setupOlderPosts() {
  const more = $('#timeline-more');
  const button = $('#more-posts');
  button.addEventListener('click', () => busy(button, loadOlder));
  if (!('IntersectionObserver' in window)) return;
  const observer = new IntersectionObserver((entries) => {
    if (!entries.some((e) => e.isIntersecting) || !state.next) return;
    busy(null, async () => {
      await loadOlder();
      // Still in view (a short page): look again, which loads the next one.
      observer.unobserve(more);
      observer.observe(more);
    });
  }, { rootMargin: '400px 0px' });
  observer.observe(more);
}

/** "deleted on k of n friends' devices", the receipt count of one deletion. */
function receiptText(d) {
  if (!d) return 'Deleting…';
  if (!d.total) return "Deleted; no friend's device had a copy";
  const all = d.confirmed >= d.total ? ' ✓' : '';
  return `Deleted on ${d.confirmed} of ${d.total} friends' devices${all}`;
}

/** A deletion id a post points to (the API gives an id, or the deletion itself). */
function deletionIdOf(post) {
  const d = post.deletion;
  if (!d) return null;
  return typeof d === 'string' ? d : d.id || null;
}

/** Shows `posts`; `older`: they come from scrolling down, so none is announced as new. */
function renderFeed(posts, deletions, older = false) {
  const byId = new Map(deletions.map((d) => [d.id, d]));
  renderTimeline(posts, byId, older);
  const shown = new Set(posts.map(deletionIdOf).filter(Boolean));
  renderDeletions(deletions.filter((d) => !shown.has(d.id)));
  state.firstFeed = false;
}

function renderTimeline(posts, deletionsById, older) {
  const list = $('#timeline');
  const seen = new Set();
  let prev = null;
  const fresh = [];
  for (const post of posts) {
    const key = post.author + '/' + post.id;
    if (seen.has(key)) continue;
    seen.add(key);
    const deletion = deletionIdOf(post) ? deletionsById.get(deletionIdOf(post)) || null : undefined;
    let entry = state.posts.get(key);
    if (!entry) {
      entry = createPost(post);
      state.posts.set(key, entry);
      if (!state.firstFeed && !older && !post.mine) fresh.push(post);
    }
    updatePost(entry, post, deletion);
    const expected = prev ? prev.nextSibling : list.firstChild;
    if (expected !== entry.el) list.insertBefore(entry.el, expected);
    prev = entry.el;
  }
  for (const [key, entry] of state.posts) {
    if (!seen.has(key)) {
      entry.el.remove();
      state.posts.delete(key);
    }
  }
  $('#timeline-empty').hidden = posts.length > 0;
  $('#timeline-more').hidden = !state.next;
  followLoading();
  if (fresh.length === 1) announce(`New post from ${fresh[0].author_name || 'a friend'}`);
  else if (fresh.length > 1) announce(`${fresh.length} new posts`);
}

/**
 * Points `el` (an `img`'s `src`, a link's `href`) at the API route `url`:
 * the route itself on the node's own page, a `blob:` URL fetched with the
 * token on another origin (an `img` cannot send the token). Offline, the
 * element stays without it.
 */
function media(el, url) {
  const attr = el.tagName === 'IMG' ? 'src' : 'href';
  if (!api.paired) {
    el.setAttribute(attr, api.node + url);
    return el;
  }
  api.mediaUrl(url).then((u) => el.setAttribute(attr, u), () => {});
  return el;
}

/** A round picture: the person's profile picture if they set one, else their initial. */
function avatar(id, name, url) {
  const inner = isLocalApiUrl(url) ? media(h('img', { alt: '', loading: 'lazy', decoding: 'async' }), url) : initial(name);
  return h('span', { class: 'avatar', 'aria-hidden': 'true', style: `--hue:${hueOf(id)}` }, inner);
}

/** Builds the parts of a post that do not change; `updatePost` fills the rest. */
function createPost(post) {
  const titleId = 'post-' + hueOf(post.author) + '-' + String(post.id).replace(/[^A-Za-z0-9_-]/g, '');
  const head = h('header', { class: 'post-head' });
  const body = h('div', { class: 'post-body' });
  const comments = h('ul', { class: 'comments', 'aria-label': 'Comments' });
  const input = h('input', {
    type: 'text', name: 'comment', maxlength: '2000', autocomplete: 'off',
    placeholder: 'Write a comment…', 'aria-label': 'Write a comment',
  });
  const send = h('button', { type: 'submit' }, 'Comment');
  const form = h('form', { class: 'comment-form', 'aria-label': 'Comment' }, input, send);
  const el = h('li', { class: 'post-item' },
    h('article', { class: 'card post', 'aria-labelledby': titleId }, head, body, comments, form));
  const entry = { el, head, body, comments, titleId, sig: null, commentsSig: null, post };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    busy(send, async () => {
      await api.comment(entry.post.author, entry.post.id, text);
      input.value = '';
      await refresh();
    });
  });
  return entry;
}

function updatePost(entry, post, deletion) {
  entry.post = post;
  const sig = JSON.stringify([post.author_name, post.author_avatar, post.audience, post.text, post.time, post.mine, post.loading,
    post.attachments, deletion === undefined ? null : deletion]);
  if (sig !== entry.sig) {
    entry.sig = sig;
    entry.head.replaceChildren(...postHead(entry, post, deletion));
    entry.body.replaceChildren(...postBody(post, deletion));
  }
  const comments = Array.isArray(post.comments) ? post.comments : [];
  const commentsSig = JSON.stringify(comments);
  if (commentsSig !== entry.commentsSig) {
    entry.commentsSig = commentsSig;
    entry.comments.replaceChildren(...comments.map(commentItem));
    entry.comments.hidden = comments.length === 0;
  }
}

function postHead(entry, post, deletion) {
  const name = post.author_name || shortId(post.author);
  const parts = [
    avatar(post.author, name, post.author_avatar),
    h('div', { class: 'who' },
      h('span', { class: 'author', id: entry.titleId }, name, post.mine ? h('span', { class: 'you' }, ' (you)') : null),
      h('span', { class: 'meta' }, timeEl(post.time), ' · ',
        h('span', { class: 'badge badge-' + post.audience }, audienceLabel(post.audience)))),
  ];
  if (post.mine && deletion === undefined) parts.push(deleteControl(post));
  return parts;
}

function postBody(post, deletion) {
  const parts = [];
  if (post.loading) parts.push(loadingText(post));
  if (post.text) parts.push(h('p', { class: 'text' }, post.text));
  const attachments = Array.isArray(post.attachments) ? post.attachments : [];
  const images = attachments.filter((a) => isLocalApiUrl(a.url) && /^image\//.test(a.media_type || ''));
  const files = attachments.filter((a) => isLocalApiUrl(a.url) && !/^image\//.test(a.media_type || ''));
  if (images.length) {
    parts.push(h('div', { class: 'images count-' + Math.min(images.length, 4) },
      images.map((a) => media(h('a', { target: '_blank', rel: 'noopener', class: 'image-link' },
        media(h('img', { alt: a.name || 'image', loading: 'lazy', decoding: 'async' }), a.url)), a.url))));
  }
  if (files.length) {
    parts.push(h('ul', { class: 'files', 'aria-label': 'Attachments' },
      files.map((a) => h('li', {}, media(h('a', { download: a.name || '' }, a.name || 'file'), a.url),
        ' ', h('span', { class: 'hint' }, sizeText(a.size))))));
  }
  if (deletion !== undefined) {
    parts.push(h('p', { class: 'deletion-status', role: 'status' }, receiptText(deletion)));
  }
  return parts;
}

function commentItem(c) {
  const name = c.author_name || shortId(c.author);
  return h('li', { class: 'comment' },
    avatar(c.author, name, c.author_avatar),
    h('div', {},
      h('span', { class: 'author' }, name), ' ',
      h('span', { class: 'meta' }, timeEl(c.time)),
      c.loading ? loadingText(c) : h('p', { class: 'text' }, c.text)));
}

// ---------------------------------------------------- purged, loading again

/** Times a loading post is read again before the page says its author is away. */
const LOADING_TRIES = 20;
const LOADING_EVERY_MS = 1500;

/** "Loading…" for a post or comment whose text the node fetches again from its author. */
function loadingText(item) {
  const key = item.author + '/' + (item.post_id || item.id);
  const away = (state.loadingTries.get(key) || 0) >= LOADING_TRIES;
  const name = item.author_name || shortId(item.author);
  return h('p', { class: 'text loading', role: 'status' },
    away ? `Not here, and ${name}'s device is not reachable now: it loads when they are back.`
      : `Loading… (fetching it again from ${name})`);
}

/** Reads the loading posts again until their text arrives (see `Post.loading`). */
function followLoading() {
  if (state.loadingTimer) return;
  const waiting = () => [...state.posts.entries()].filter(([key, e]) =>
    (e.post.loading || (e.post.comments || []).some((c) => c.loading))
    && (state.loadingTries.get(key) || 0) < LOADING_TRIES);
  if (waiting().length === 0) return;
  state.loadingTimer = setTimeout(async () => {
    state.loadingTimer = null;
    for (const [key, entry] of waiting()) {
      state.loadingTries.set(key, (state.loadingTries.get(key) || 0) + 1);
      try {
        const { posts } = await api.postsWithId(entry.post.id);
        const fresh = (posts || []).find((p) => p.author === entry.post.author);
        if (fresh) updatePost(entry, fresh, undefined);
        else entry.sig = null;
      } catch (err) {
        entry.sig = null;
      }
      if (state.loadingTries.get(key) >= LOADING_TRIES) {
        entry.sig = null;
        updatePost(entry, entry.post, undefined);
      }
    }
    followLoading();
  }, LOADING_EVERY_MS);
}

/** "Delete post", then "Confirm delete" / "Cancel" in place (no modal dialog). */
function deleteControl(post) {
  const box = h('div', { class: 'post-actions' });
  const ask = () => {
    const confirm = h('button', { type: 'button', class: 'danger' }, 'Confirm delete');
    const cancel = h('button', { type: 'button', class: 'link' }, 'Cancel');
    confirm.addEventListener('click', () => busy(confirm, async () => {
      const answer = await api.deletePost(post.id);
      if (answer && answer.deletion) {
        state.deletedPosts.set(answer.deletion, { text: post.text, time: post.time, audience: post.audience });
      }
      await refresh();
    }));
    cancel.addEventListener('click', idle);
    box.replaceChildren(h('span', { class: 'hint' }, 'Delete for everyone?'), confirm, cancel);
    confirm.focus();
  };
  const idle = () => {
    box.replaceChildren(h('button', { type: 'button', class: 'link danger-text', onclick: ask }, 'Delete post'));
  };
  idle();
  return box;
}

/** What a deleted prefix was, in words. */
function describePrefix(d) {
  const known = state.deletedPosts.get(d.id);
  for (const a of AUDIENCES) {
    if (d.prefix === a.prefix) return `All posts to ${a.label}`;
    if (under(d.prefix, a.prefix)) {
      const snippet = known && known.text ? `“${known.text.length > 60 ? known.text.slice(0, 57) + '…' : known.text}”` : 'A post';
      return `${snippet} to ${a.label}`;
    }
  }
  const other = OTHER_PREFIXES[d.prefix];
  return other ? other[0].toUpperCase() + other.slice(1) : d.prefix;
}

function renderDeletions(deletions) {
  const section = $('#deletions');
  const list = $('#deletion-list');
  const sorted = [...deletions].sort((a, b) => Number(b.time) - Number(a.time));
  section.hidden = sorted.length === 0;
  list.replaceChildren(...sorted.map((d) => {
    const devices = Array.isArray(d.devices) ? d.devices : [];
    const done = d.total > 0 && d.confirmed >= d.total;
    return h('li', { class: 'deletion' + (done || !d.total ? ' done' : ' pending'), dataset: { deletion: d.id } },
      h('div', { class: 'deletion-what' },
        h('span', {}, describePrefix(d)), ' ',
        h('span', { class: 'meta' }, 'deleted ', timeEl(d.time))),
      h('p', { class: 'deletion-status', role: 'status' }, receiptText(d)),
      devices.length ? h('details', {
        open: state.openDeletions.has(d.id),
        ontoggle: (event) => {
          if (event.target.open) state.openDeletions.add(d.id);
          else state.openDeletions.delete(d.id);
        },
      },
        h('summary', {}, 'Devices'),
        h('ul', { class: 'devices' }, devices.map((dev) => h('li', {},
          (dev.name || shortId(dev.namespace)) + ' · device ' + shortId(dev.device) + ' · ',
          dev.confirmed_at ? ['confirmed ', timeEl(dev.confirmed_at)] : 'waiting')))) : null);
  }));
}

// --------------------------------------------------------------- composer

function renderAttachments() {
  const box = $('#attach-preview');
  for (const img of box.querySelectorAll('img')) URL.revokeObjectURL(img.src);
  box.replaceChildren(...state.files.map((file, i) => h('div', { class: 'thumb', role: 'listitem' },
    h('img', { src: URL.createObjectURL(file), alt: file.name }),
    h('button', {
      type: 'button', class: 'remove', 'aria-label': `Remove image ${file.name}`,
      onclick: () => { state.files.splice(i, 1); renderAttachments(); },
    }, '×'))));
  box.hidden = state.files.length === 0;
}

/** Bytes of `text` in UTF-8: what the API's text limit counts. */
const utf8Bytes = (text) => new TextEncoder().encode(text).length;

/**
 * Shows how much of the server's text limit (GET /api/id, `limits.text_bytes`)
 * the post uses, in bytes of UTF-8 as the server counts; above it the post
 * cannot be sent. Before the limit is known nothing is shown or held back.
 */
function updatePostCount() {
  const limit = state.me && state.me.limits && state.me.limits.text_bytes;
  const count = $('#post-count');
  const textArea = $('#post-text');
  if (!limit) {
    count.hidden = true;
    return;
  }
  const used = utf8Bytes(textArea.value);
  const over = used > limit;
  const n = (x) => x.toLocaleString();
  count.textContent = over
    ? `${n(used)} / ${n(limit)} bytes: ${n(used - limit)} too many`
    : `${n(used)} / ${n(limit)} bytes`;
  count.classList.toggle('over', over);
  count.hidden = false;
  textArea.setAttribute('aria-invalid', String(over));
  $('#post-submit').disabled = over;
}

function setupComposer() {
  $('#post-text').addEventListener('input', updatePostCount);
  const input = $('#post-images');
  input.addEventListener('change', () => {
    for (const file of input.files) {
      if (!file.type.startsWith('image/')) {
        showError(new Error(`${file.name} is not an image`));
      } else if (file.size > MAX_ATTACHMENT_BYTES) {
        showError(new Error(`${file.name} is too large (${sizeText(file.size)}; at most ${sizeText(MAX_ATTACHMENT_BYTES)})`));
      } else {
        state.files.push(file);
      }
    }
    input.value = '';
    renderAttachments();
  });
  renderAttachments();

  $('#composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const textArea = $('#post-text');
    const text = textArea.value.trim();
    if (!text && state.files.length === 0) {
      showError(new Error('Write something or add an image first.'));
      textArea.focus();
      return;
    }
    const limit = state.me && state.me.limits && state.me.limits.text_bytes;
    if (limit && utf8Bytes(text) > limit) {
      showError(new Error(`The post is too long: at most ${limit.toLocaleString()} bytes.`));
      textArea.focus();
      return;
    }
    const audience = $('#post-audience').value;
    busy($('#post-submit'), async () => {
      const attachments = await Promise.all(state.files.map(async (file) => ({
        name: file.name, media_type: file.type || 'application/octet-stream', data: await base64Of(file),
      })));
      await api.post(text, audience, attachments);
      textArea.value = '';
      state.files = [];
      renderAttachments();
      announce(`Posted to ${audienceLabel(audience)}`);
      await refresh();
    }).then(updatePostCount);
  });
}

// ---------------------------------------------------------------- friends

async function loadFriendsView() {
  await Promise.all([loadFriends(), loadTicket(), loadProfile(), loadApps(), loadCache()]);
}

// ----------------------------------------------------------------- storage

/** What of friends' data the node keeps, and its budget. */
async function loadCache() {
  renderCache(await api.cache());
}

function renderCache(c) {
  const age = c.max_age ? Math.round(c.max_age / 86400) : '';
  $('#cache-summary').textContent = `Friends' posts and photos kept here: ${c.documents} posts and comments `
    + `(${sizeText(c.document_bytes)}) and ${c.blobs} photos and files (${sizeText(c.blob_bytes)}), `
    + `${sizeText(c.bytes)} of ${sizeText(c.budget)}.`;
  const budget = $('#cache-budget');
  if (document.activeElement !== budget) budget.value = String(Math.round(c.budget / 1e6));
  const days = $('#cache-age');
  if (document.activeElement !== days) days.value = String(age);
  if (c.purged) {
    announce(`Purged ${c.purged.documents} posts and ${c.purged.blobs} files of friends (${sizeText(c.purged.bytes)}).`);
    // Purged posts show as loading until they come back.
    state.loadingTries.clear();
    if (c.purged.documents || c.purged.blobs) scheduleRefresh('cache');
  }
}

function setupCache() {
  $('#cache-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const mb = Number($('#cache-budget').value);
    const days = $('#cache-age').value.trim();
    if (!Number.isInteger(mb) || mb < 0) {
      showError(new Error('The budget is a whole number of megabytes.'));
      return;
    }
    if (days !== '' && !/^[1-9][0-9]*$/.test(days)) {
      showError(new Error('The age is a whole number of days, or empty for none.'));
      return;
    }
    busy(ev.submitter || null, async () => {
      renderCache(await api.setCache({ budget: mb + 'MB', max_age: days === '' ? null : days + 'd' }));
    });
  });
  const box = $('#cache-purge-box');
  const ask = () => {
    const yes = h('button', { type: 'button', class: 'danger' }, 'Confirm purge');
    const no = h('button', { type: 'button' }, 'Cancel');
    yes.addEventListener('click', () => busy(yes, async () => {
      renderCache(await api.purgeCache());
      idle();
    }));
    no.addEventListener('click', idle);
    box.replaceChildren(h('span', { class: 'hint' }, 'Purge all friends\' posts and photos kept here? They load again from your friends when you open them.'), ' ', yes, ' ', no);
    yes.focus();
  };
  const idle = () => {
    const purge = h('button', { type: 'button', id: 'cache-purge' }, 'Purge friends\' data now');
    purge.addEventListener('click', ask);
    box.replaceChildren(purge);
  };
  idle();
}

// ------------------------------------------------------------------ apps

/** The sites allowed to use this node and those asking to: on the node's own page only. */
async function loadApps() {
  const card = $('#apps-card');
  if (api.paired) {
    card.hidden = true;
    return;
  }
  const web = await api.webOrigins();
  const pending = Array.isArray(web && web.pending) ? web.pending : [];
  const origins = Array.isArray(web && web.origins) ? web.origins : [];
  card.hidden = false;
  $('#apps-empty').hidden = origins.length > 0 || pending.length > 0;
  $('#pending-list').replaceChildren(...pending.map((p) => {
    const allow = h('button', { type: 'button', class: 'primary', 'aria-label': `Allow ${p.origin} with the code ${p.code}` }, 'Allow');
    allow.addEventListener('click', () => busy(allow, async () => {
      await api.allowOrigin(p.origin, p.code);
      announce(`${p.origin} may now use your kith`);
      await loadApps();
    }));
    return h('li', { class: 'friend' },
      h('p', {}, h('span', { class: 'mono' }, p.origin), ' asks to connect with the code ',
        h('strong', { class: 'pair-code mono' }, p.code)),
      h('div', { class: 'friend-actions' }, allow));
  }));
  $('#origin-list').replaceChildren(...origins.map((o) => {
    const box = h('div', { class: 'friend-actions' });
    const idle = () => box.replaceChildren(h('button', {
      type: 'button', class: 'danger', 'aria-label': `Revoke ${o.origin}`, onclick: confirmRevoke,
    }, 'Revoke'));
    function confirmRevoke() {
      const yes = h('button', { type: 'button', class: 'danger', 'aria-label': `Confirm revoke ${o.origin}` }, 'Confirm');
      yes.addEventListener('click', () => busy(yes, async () => {
        await api.revokeOrigin(o.origin);
        announce(`${o.origin} can no longer use your kith`);
        await loadApps();
      }));
      box.replaceChildren(h('span', { class: 'hint' }, `Stop ${o.origin} using your kith?`), yes,
        h('button', { type: 'button', class: 'link', onclick: idle }, 'Cancel'));
      yes.focus();
    }
    idle();
    return h('li', { class: 'friend' },
      h('p', {}, h('span', { class: 'mono' }, o.origin), ' ',
        h('span', { class: 'hint' }, 'allowed ', timeEl(o.added_ms * 1000))),
      box);
  }));
}

async function loadTicket() {
  const { ticket } = await api.ticket();
  $('#my-ticket').value = ticket || '';
}

async function loadProfile() {
  const profile = await api.profile();
  const name = $('#profile-name');
  const bio = $('#profile-bio');
  // Keep what the user is typing.
  if (document.activeElement !== name) name.value = (profile && profile.name) || '';
  if (document.activeElement !== bio) bio.value = (profile && profile.bio) || '';
  renderOwnAvatar(profile);
}

function renderOwnAvatar(profile) {
  const box = $('#profile-avatar');
  const name = (profile && profile.name) || (state.me && state.me.name) || '';
  const url = profile && profile.avatar ? profile.avatar.url : null;
  const el = avatar(state.me ? state.me.namespace : '', name, url);
  el.id = 'profile-avatar';
  el.classList.add('avatar-large');
  box.replaceWith(el);
}

async function loadFriends() {
  const [friends, status] = await Promise.all([api.friends(), api.status().catch(() => null)]);
  state.friends = Array.isArray(friends) ? friends : [];
  state.peers = status && Array.isArray(status.peers) ? status.peers : [];
  renderFriends();
}

/** "2 min ago" for a time in ms since the epoch, or "never". */
function ago(ms) {
  if (typeof ms !== 'number') return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

/** One line per device of `friend`: how it is reached and when it last synced. */
function networkLines(friend) {
  const peers = (state.peers || []).filter((p) => p.namespace === friend.namespace);
  if (peers.length === 0) return null;
  return h('ul', { class: 'network', 'aria-label': `How ${friend.name || 'this friend'}'s devices are reached` },
    ...peers.map((p) => {
      let how = 'not reachable now';
      if (p.route === 'direct') how = `direct to ${p.via}`;
      else if (p.route === 'relay') how = `through relay ${p.via}`;
      else if (p.reachable) how = 'reachable';
      const rtt = typeof p.rtt_ms === 'number' ? `, ${Math.round(p.rtt_ms)} ms` : '';
      const owed = [p.owed_keys ? 'a new key' : null, p.owed_deletions ? 'a deletion' : null].filter(Boolean);
      return h('li', { class: 'hint' },
        `Device ${shortId(p.device)}: ${how}${rtt}; last sync ${ago(p.last_sync_ms)}, last live message ${ago(p.last_live_ms)}`,
        owed.length ? `; still owed ${owed.join(' and ')}` : '');
    }));
}

/** Whether `prefixes` let a friend read `prefix`: exactly, or through a wider grant. */
function coverage(prefixes, prefix) {
  if (prefixes.includes(prefix)) return 'exact';
  if (prefixes.some((p) => under(prefix, p))) return 'wider';
  return null;
}

function renderFriends() {
  const list = $('#friend-list');
  $('#friends-empty').hidden = state.friends.length > 0;
  list.replaceChildren(...state.friends.map(friendItem));
}

function friendItem(friend) {
  const name = friend.name || shortId(friend.namespace);
  const prefixes = Array.isArray(friend.prefixes) ? friend.prefixes : [];
  const legendId = 'friend-' + friend.namespace;
  const switches = SHAREABLE.map((a) => {
    const cover = coverage(prefixes, a.prefix);
    const input = h('input', {
      type: 'checkbox', role: 'switch', checked: cover !== null, disabled: cover === 'wider',
    });
    input.addEventListener('change', () => busy(input, async () => {
      try {
        if (input.checked) await api.grant(friend.namespace, a.prefix);
        else await api.revoke(friend.namespace, a.prefix, false);
        announce(input.checked ? `${name} can read ${a.label} posts` : `${name} no longer reads ${a.label} posts`);
      } finally {
        await loadFriends();
      }
    }));
    return h('label', { class: 'switch' }, input, h('span', { class: 'track', 'aria-hidden': 'true' }), h('span', {}, a.label),
      cover === 'wider' ? h('span', { class: 'hint' }, ' (through a wider grant)') : null);
  });
  const others = prefixes.filter((p) => !SHAREABLE.some((a) => a.prefix === p)).map((p) => OTHER_PREFIXES[p] || p);
  const revokeBox = h('div', { class: 'friend-actions' });
  const idle = () => revokeBox.replaceChildren(
    h('button', {
      type: 'button', 'aria-label': `Sync now with ${name}`,
      onclick: (ev) => busy(ev.currentTarget, async () => { await api.sync(friend.namespace); await refresh(); }),
    }, 'Sync now'),
    h('button', {
      type: 'button', class: 'danger', 'aria-label': `Revoke and delete for ${name}`, disabled: prefixes.length === 0,
      onclick: confirmRevoke,
    }, 'Revoke and delete'),
  );
  function confirmRevoke() {
    const yes = h('button', { type: 'button', class: 'danger', 'aria-label': `Confirm revoke and delete for ${name}` }, 'Confirm');
    yes.addEventListener('click', () => busy(yes, async () => {
      // Every grant at or under `/`: one revocation and one deletion request each.
      await api.revoke(friend.namespace, '/', true);
      announce(`${name} can no longer read your posts; their devices were asked to delete them`);
      await Promise.all([loadFriends(), refresh()]);
    }));
    revokeBox.replaceChildren(
      h('span', { class: 'hint' }, `Stop sharing with ${name} and ask their devices to delete everything you shared?`),
      yes, h('button', { type: 'button', class: 'link', onclick: idle }, 'Cancel'));
    yes.focus();
  }
  idle();
  return h('li', { class: 'friend' },
    h('div', { class: 'friend-head' },
      avatar(friend.namespace, name, friend.avatar),
      h('div', { class: 'who' },
        h('span', { class: 'author' }, name),
        h('span', { class: 'meta mono', title: friend.namespace }, shortId(friend.namespace)))),
    h('fieldset', { class: 'audiences' },
      h('legend', { id: legendId }, `${name} can read`),
      switches,
      others.length ? h('p', { class: 'hint' }, 'Also: ', others.join(', ')) : null),
    networkLines(friend),
    revokeBox);
}

function setupFriends() {
  $('#copy-ticket').addEventListener('click', (ev) => busy(ev.currentTarget, async () => {
    const ticket = $('#my-ticket');
    try {
      await navigator.clipboard.writeText(ticket.value);
    } catch {
      ticket.select();
      document.execCommand('copy');
    }
    announce('Ticket copied');
  }));
  $('#add-friend').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ticket = $('#friend-ticket').value.trim();
    const name = $('#friend-name').value.trim();
    if (!ticket) return;
    const button = ev.currentTarget.querySelector('button[type=submit]');
    busy(button, async () => {
      const friend = await api.addFriend(ticket, name || undefined);
      $('#friend-ticket').value = '';
      $('#friend-name').value = '';
      announce(`Added ${(friend && friend.name) || name || 'friend'}; turn on a switch to share posts`);
      await loadFriends();
    });
  });
  const avatarInput = $('#profile-avatar-file');
  avatarInput.addEventListener('change', () => {
    const file = avatarInput.files[0];
    avatarInput.value = '';
    if (!file) return;
    if (!file.type.startsWith('image/')) {
      showError(new Error(`${file.name} is not an image`));
      return;
    }
    if (file.size > MAX_AVATAR_BYTES) {
      showError(new Error(`${file.name} is too large (${sizeText(file.size)}; at most ${sizeText(MAX_AVATAR_BYTES)})`));
      return;
    }
    busy(avatarInput, async () => {
      renderOwnAvatar(await api.setAvatar(file));
      announce('Profile picture saved');
      await refresh();
    });
  });
  $('#profile-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const button = ev.currentTarget.querySelector('button[type=submit]');
    busy(button, async () => {
      const profile = await api.saveProfile({ name: $('#profile-name').value.trim(), bio: $('#profile-bio').value.trim() });
      if (profile && profile.name) $('#me-name').textContent = profile.name;
      announce('Profile saved');
      await refresh();
    });
  });
}

// ---------------------------------------------------------------- pairing

/**
 * On another origin than the node's (the files `kith web export` writes,
 * served by any web server), the page carries `<meta name="kith-api"
 * content="paired">` and talks to the node it was paired with; the node's
 * own copy says `same-origin`.
 */
const HOSTED = (document.querySelector('meta[name="kith-api"]') || {}).content === 'paired';
/** Where the pairing (node address and this origin's token) is kept: this origin's storage. */
const PAIRING_KEY = 'kith.pairing.v1';
/** The node a person most likely runs (`kith serve`'s default address). */
const DEFAULT_NODE = 'http://127.0.0.1:7780';

function savedPairing() {
  try {
    const saved = JSON.parse(localStorage.getItem(PAIRING_KEY));
    return saved && typeof saved.node === 'string' && typeof saved.token === 'string' ? saved : null;
  } catch {
    return null;
  }
}

/** This site may no longer use the node: forget the token and what was shown, and offer to pair again. */
function unpaired(reason) {
  if (stream) stream.close();
  stream = null;
  forgetTimeline();
  try {
    localStorage.removeItem(PAIRING_KEY);
  } catch {
    // Nothing was kept.
  }
  if (api) api.forgetMedia();
  state.posts.clear();
  $('#timeline').replaceChildren();
  showPairing(reason);
}

/** Shows the "connect to your kith" view: the node's address, then the code to approve. */
function showPairing(reason) {
  document.body.classList.add('pairing');
  for (const id of ['#view-feed', '#view-friends']) $(id).hidden = true;
  $('#view-pair').hidden = false;
  $('#offline').hidden = true;
  const why = $('#pair-reason');
  why.textContent = reason || '';
  why.hidden = !reason;
  $('#pair-origin').textContent = location.origin;
  const node = $('#pair-node');
  const asked = new URLSearchParams(location.search).get('node');
  if (!node.value) node.value = asked || DEFAULT_NODE;
  $('#pair-code-box').hidden = true;
}

let pairingRun = null;

function setupPairing() {
  $('#pair-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const button = ev.currentTarget.querySelector('button[type=submit]');
    busy(button, async () => {
      if (pairingRun) pairingRun.abort();
      const run = new AbortController();
      pairingRun = run;
      const node = $('#pair-node').value.trim();
      const pairing = await pair(node);
      $('#pair-code').textContent = pairing.code;
      $('#pair-command').textContent = `kith web allow ${pairing.origin} --code ${pairing.code}`;
      const nodePage = $('#pair-node-page');
      nodePage.href = createClient({ node }).node + '/#friends';
      $('#pair-code-box').hidden = false;
      $('#pair-reason').hidden = true;
      announce(`Approve the code ${pairing.code} on your kith node`);
      const token = await pairing.approved({ signal: run.signal });
      localStorage.setItem(PAIRING_KEY, JSON.stringify({ node: createClient({ node }).node, token }));
      // Start afresh on the paired node.
      location.reload();
    });
  });
}

// ------------------------------------------------------------------ start

/** The event stream, while it is followed. */
let stream = null;

async function start() {
  // The app shell works without the node (sw.js): the page's files only.
  if ('serviceWorker' in navigator) navigator.serviceWorker.register('./sw.js').catch(() => {});
  // The server turns `?token=` into a cookie and redirects; never keep the
  // token in the address bar or history if it is still there.
  if (new URLSearchParams(location.search).has('token')) {
    history.replaceState(null, '', location.pathname + location.hash);
  }
  setupPairing();
  if (HOSTED) {
    const saved = savedPairing();
    if (!saved) {
      showPairing();
      return;
    }
    api = createClient({ node: saved.node, token: saved.token });
  } else {
    api = createClient();
  }
  $('#tab-feed').addEventListener('click', () => showView('feed'));
  $('#tab-friends').addEventListener('click', () => showView('friends'));
  window.addEventListener('hashchange', () => showView(location.hash === '#friends' ? 'friends' : 'feed'));
  setupComposer();
  setupFriends();
  setupCache();
  setupOlderPosts();
  showView(location.hash === '#friends' ? 'friends' : 'feed');

  try {
    state.me = await api.id();
    $('#me-name').textContent = state.me.name || shortId(state.me.namespace);
    updatePostCount();
  } catch (err) {
    if (!(await connectionLost(err))) showError(err);
    if ($('#view-pair').hidden === false) return;
  }
  await refresh();
  stream = api.events((ev) => scheduleRefresh(ev.kind), streamState);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') scheduleRefresh('open');
  });
  // Relative times ("5 min ago") age while the page stays open.
  setInterval(() => {
    for (const t of document.querySelectorAll('time[data-micros]')) t.textContent = relativeTime(t.dataset.micros);
  }, 30_000);
}

start();
