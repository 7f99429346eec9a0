// Drives two kith feed pages in Debian's chromium, as tests/browser.rs asks:
//
//   node feed.mjs <alicePageUrl> <bobPageUrl> <screenshotDir>
//
// The two daemons are already friends and alice has granted bob her
// "friends" audience. Alice chooses a profile picture on her page; her
// composer counts the bytes of the text against the server's limit (GET
// /api/id) and holds back a post one byte over it; then a post
// with an image is composed; bob's
// page shows it without a reload, image and alice's picture rendered; bob comments and alice's
// page shows the comment; alice deletes the post; bob's
// page removes it; alice's page shows the deletion confirmed on 1 of 1
// friends' devices; with 45 more posts alice's page shows the newest 20 and
// loads older pages as she scrolls, down to the oldest, each post once, and
// a new post still appears on top. Screenshots of each step go to
// <screenshotDir>.
//
// Every wait is one of playwright's auto-waiting calls with a timeout; there
// are no fixed sleeps. Exit status 0 means every step passed.

import { chromium } from 'playwright-core';
import { deflateSync } from 'node:zlib';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [aliceUrl, bobUrl, shots] = process.argv.slice(2);
if (!aliceUrl || !bobUrl || !shots) {
  console.error('usage: node feed.mjs <alicePageUrl> <bobPageUrl> <screenshotDir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

/** How long a change may take to reach the other daemon and its page. */
const LIVE_MS = Number(process.env.KITH_BROWSER_TIMEOUT_MS || 60_000);
/** How long the local page may take to show its own action. */
const LOCAL_MS = 15_000;
const CHROMIUM = process.env.KITH_CHROMIUM || '/usr/bin/chromium';

/** A small RGB PNG (a gradient), built here so the test needs no fixture file. */
function png(width, height) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x++) {
      row[1 + x * 3] = Math.round((255 * x) / width);
      row[2 + x * 3] = 120;
      row[3 + x * 3] = Math.round((255 * y) / height);
    }
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

let step = 'start';
const log = (msg) => console.log(`[feed.mjs] ${msg}`);
function begin(name) {
  step = name;
  log(name);
}

// `launch` gives the browser a fresh, temporary user-data dir of its own.
const browser = await chromium.launch({
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
});

const pages = {};
const problems = [];
let failed = false;

// One browser profile for both people, as one person with two tabs would
// have: both daemons are on 127.0.0.1 and cookies ignore ports, so this
// checks that each daemon's token cookie has a name of its own.
const context = await browser.newContext({
  // Numbers in the page are formatted for the locale: "65,536" in en-US.
  locale: 'en-US',
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 1,
  isMobile: true,
  hasTouch: true,
});

async function openPage(who, url) {
  const page = await context.newPage();
  page.on('pageerror', (err) => problems.push(`${who}: page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error') log(`${who} console: ${msg.text()}`);
  });
  await page.goto(url);
  // The token became a cookie and the server redirected to the bare page.
  if (new URL(page.url()).searchParams.has('token')) {
    throw new Error(`${who}: the page URL still carries the token after loading: ${page.url()}`);
  }
  await page.getByRole('textbox', { name: 'Post text' }).waitFor({ timeout: LOCAL_MS });
  // A marker that survives only as long as the document does: if it is
  // still there at the end, the page never reloaded.
  await page.evaluate(() => { window.kithNoReload = true; });
  pages[who] = page;
  return page;
}

async function shot(who, name) {
  const page = pages[who];
  if (page) await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

async function imageRendered(locator) {
  await locator.scrollIntoViewIfNeeded({ timeout: LOCAL_MS });
  await locator.evaluate(
    (img) => new Promise((resolve, reject) => {
      const check = () => (img.naturalWidth > 0 ? resolve() : reject(new Error('image failed to decode')));
      if (img.complete) check();
      else {
        img.addEventListener('load', check, { once: true });
        img.addEventListener('error', () => reject(new Error(`image ${img.src} did not load`)), { once: true });
      }
    }),
    undefined,
    { timeout: LIVE_MS },
  );
}

try {
  begin('open both pages');
  const alice = await openPage('alice', aliceUrl);
  const bob = await openPage('bob', bobUrl);

  begin("alice's friends view lists bob with the friends audience granted");
  await alice.getByRole('button', { name: 'Friends', exact: true }).click();
  const bobGroup = alice.getByRole('group', { name: 'bob can read' });
  await bobGroup.waitFor({ timeout: LOCAL_MS });
  const friendsSwitch = bobGroup.getByRole('switch', { name: 'Friends', exact: true });
  await friendsSwitch.waitFor({ timeout: LOCAL_MS });
  if (!(await friendsSwitch.isChecked())) throw new Error('the "Friends" switch for bob is off');
  await alice.getByRole('textbox', { name: 'My ticket' }).waitFor({ timeout: LOCAL_MS });
  // How bob's device is reached (from GET /api/status): the daemons are on
  // loopback, so directly.
  await alice.getByRole('list', { name: "How bob's devices are reached" })
    .getByText(/direct to 127\.0\.0\.1:\d+/).waitFor({ timeout: LOCAL_MS });

  begin('alice chooses a profile picture');
  await alice.getByLabel('Choose a profile picture').setInputFiles({
    name: 'me.png', mimeType: 'image/png', buffer: png(32, 32),
  });
  await imageRendered(alice.locator('#profile-avatar img'));
  await shot('alice', '1-alice-friends');
  await alice.getByRole('button', { name: 'Feed', exact: true }).click();

  begin("the composer counts bytes up to the server's text limit and holds back a longer post");
  const { limits } = await alice.evaluate(async () => (await fetch('/api/id')).json());
  const limit = limits && limits.text_bytes;
  if (limit !== 65536) throw new Error(`GET /api/id gives the text limit ${limit}, not 65536`);
  const postText = alice.getByRole('textbox', { name: 'Post text' });
  if ((await postText.getAttribute('maxlength')) !== null) {
    throw new Error('the composer still has a maxlength of its own');
  }
  const postButton = alice.getByRole('button', { name: 'Post', exact: true });
  const counter = async (expected, over) => {
    // The counter describes the text box, so a screen reader reads it too.
    const count = alice.locator('#post-count');
    await alice.waitForFunction(
      (want) => document.querySelector('#post-count').textContent === want,
      expected,
      { timeout: LOCAL_MS },
    ).catch(async () => {
      throw new Error(`the counter says ${JSON.stringify(await count.textContent())}, not ${JSON.stringify(expected)}`);
    });
    if ((await postText.getAttribute('aria-describedby')) !== 'post-count') throw new Error('the counter does not describe the text box');
    if ((await postText.getAttribute('aria-invalid')) !== String(over)) throw new Error(`aria-invalid is not ${over} at ${expected}`);
    if ((await postButton.isDisabled()) !== over) throw new Error(`the Post button is ${over ? 'enabled' : 'disabled'} at ${expected}`);
  };
  await counter('0 / 65,536 bytes', false);
  await postText.fill('Café ☕'); // é is 2 bytes, ☕ 3
  await counter('9 / 65,536 bytes', false);
  await postText.fill('a'.repeat(limit));
  await counter('65,536 / 65,536 bytes', false);
  await postText.fill('a'.repeat(limit - 1) + 'é');
  await counter('65,537 / 65,536 bytes: 1 too many', true);
  await shot('alice', '2a-alice-post-too-long');
  // The server holds posts to the same limit.
  const status = await alice.evaluate(async (text) => (await fetch('/api/feed/posts', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text, audience: 'me' }),
  })).status, 'a'.repeat(limit - 1) + 'é');
  if (status !== 400) throw new Error(`the API answered ${status} to a text of ${limit + 1} bytes`);
  await postText.fill('');
  await counter('0 / 65,536 bytes', false);

  begin('alice composes a post with an image');
  const text = `Sunrise over the hills ${Date.now().toString(36)}`;
  await alice.getByRole('textbox', { name: 'Post text' }).fill(text);
  await alice.getByLabel('Attach images').setInputFiles({
    name: 'sunrise.png', mimeType: 'image/png', buffer: png(96, 64),
  });
  await alice.getByRole('img', { name: 'sunrise.png' }).waitFor({ timeout: LOCAL_MS });
  await alice.getByRole('combobox', { name: 'Audience' }).selectOption('friends');
  await shot('alice', '2-alice-composing');
  await alice.getByRole('button', { name: 'Post', exact: true }).click();
  const alicePost = alice.getByRole('article').filter({ hasText: text });
  await alicePost.waitFor({ timeout: LOCAL_MS });
  await imageRendered(alicePost.getByRole('img', { name: 'sunrise.png' }));
  await shot('alice', '3-alice-posted');

  begin("bob's page shows the post without a reload, image and alice's picture rendered");
  const bobPost = bob.getByRole('article').filter({ hasText: text });
  await bobPost.waitFor({ timeout: LIVE_MS });
  await imageRendered(bobPost.getByRole('img', { name: 'sunrise.png' }));
  await bobPost.getByText('alice', { exact: true }).waitFor({ timeout: LOCAL_MS });
  // Beside her name: alice's profile picture, not her initial.
  await imageRendered(bobPost.locator('.post-head .avatar img'));
  if (await bobPost.getByRole('button', { name: 'Delete post' }).count()) {
    throw new Error("bob's page offers to delete alice's post");
  }
  await shot('bob', '4-bob-sees-post');

  begin("bob comments; alice's page shows the comment under her post");
  const comment = `Lovely colours ${Date.now().toString(36)}`;
  await bobPost.getByRole('textbox', { name: 'Write a comment' }).fill(comment);
  await bobPost.getByRole('button', { name: 'Comment', exact: true }).click();
  await bobPost.getByRole('list', { name: 'Comments' }).getByText(comment).waitFor({ timeout: LOCAL_MS });
  await alicePost.getByRole('list', { name: 'Comments' }).getByText(comment).waitFor({ timeout: LIVE_MS });
  await shot('alice', '5-alice-sees-comment');

  begin("bob purges friends' data on his Storage card; the post loads again from alice, image and all");
  await bob.getByRole('button', { name: 'Friends', exact: true }).click();
  const storage = bob.getByRole('region', { name: 'Storage' });
  await storage.getByText(/Friends' posts and photos kept here: [1-9]/).waitFor({ timeout: LOCAL_MS });
  await storage.getByRole('button', { name: "Purge friends' data now" }).click();
  const reread = bob.waitForResponse((res) => /\/api\/feed\?/.test(res.url()), { timeout: LOCAL_MS });
  await storage.getByRole('button', { name: 'Confirm purge' }).click();
  await storage.getByText("Friends' posts and photos kept here: 0 posts and comments").waitFor({ timeout: LOCAL_MS });
  await shot('bob', '5b-bob-purged');
  // The timeline read right after the purge lists the post, loading.
  const listed = (await (await reread).json()).posts.find((p) => p.text === text || p.loading);
  if (!listed || !listed.loading || listed.text !== '') {
    throw new Error(`after the purge the post is not listed as loading: ${JSON.stringify(listed)}`);
  }
  await bob.getByRole('button', { name: 'Feed', exact: true }).click();
  await bobPost.waitFor({ timeout: LIVE_MS });
  await imageRendered(bobPost.getByRole('img', { name: 'sunrise.png' }));
  await bobPost.getByRole('list', { name: 'Comments' }).getByText(comment).waitFor({ timeout: LIVE_MS });
  await shot('bob', '5c-bob-post-back');

  begin('alice deletes the post');
  await alicePost.getByRole('button', { name: 'Delete post' }).click();
  await alicePost.getByRole('button', { name: 'Confirm delete' }).click();
  await alicePost.waitFor({ state: 'detached', timeout: LOCAL_MS });

  begin("bob's page removes it");
  await bobPost.waitFor({ state: 'detached', timeout: LIVE_MS });
  await shot('bob', '6-bob-post-removed');

  begin("alice's page shows the deletion confirmed on 1 of 1 friends' devices");
  await alice.getByText("Deleted on 1 of 1 friends' devices").waitFor({ timeout: LIVE_MS });
  await shot('alice', '7-alice-deletion-confirmed');

  begin("alice's page shows the newest page and loads older posts as she scrolls");
  const OLDER = 45;
  // Timeline reads wait until all 45 are posted: a read in the middle of
  // the burst would show the posts of that moment, and the page then keeps
  // them shown as newer ones push them down (by design), so the first page
  // would depend on how fast this machine posts.
  let release;
  const posted = new Promise((resolve) => { release = resolve; });
  const held = (route) => posted.then(() => route.continue()).catch((e) => {
    // A held read can be found answered already when it is released
    // (Playwright's "Route is already handled!", seen once in a full run):
    // nothing left to release. What the page shows is checked below.
    if (!String(e.message).includes('already handled')) throw e;
    log(`a held timeline read was answered already: ${e.message}`);
  });
  await alice.route(/\/api\/feed\?/, held);
  await alice.evaluate(async (n) => {
    for (let i = 0; i < n; i++) {
      const res = await fetch('/api/feed/posts', {
        method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ text: `older ${i}`, audience: 'me' }),
      });
      if (res.status !== 201) throw new Error(`posting answered ${res.status}`);
    }
  }, OLDER);
  release();
  await alice.unroute(/\/api\/feed\?/, held);
  const articles = alice.locator('#timeline article');
  const articleTexts = () => alice.locator('#timeline article .text').allTextContents();
  // The newest page: 20 posts, the newest on top, a way to older ones.
  await alice.waitForFunction(
    (newest) => {
      const first = document.querySelector('#timeline article .text');
      return first && first.textContent === newest && document.querySelectorAll('#timeline article').length === 20;
    },
    `older ${OLDER - 1}`,
    { timeout: LIVE_MS },
  ).catch(async () => {
    throw new Error(`the first page is not the newest 20 posts: ${JSON.stringify(await articleTexts())}`);
  });
  await alice.locator('#timeline-more').waitFor({ state: 'visible', timeout: LOCAL_MS });
  await shot('alice', '8-alice-first-page');
  // Scrolling to the end of the list loads the next pages, down to the oldest.
  for (let shown = 20; shown < OLDER;) {
    await alice.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
    await alice.waitForFunction(
      (before) => document.querySelectorAll('#timeline article').length > before,
      shown,
      { timeout: LOCAL_MS },
    ).catch(() => { throw new Error(`scrolling down did not load older posts beyond ${shown}`); });
    shown = await articles.count();
  }
  const all = await articleTexts();
  const want = Array.from({ length: OLDER }, (_, i) => `older ${OLDER - 1 - i}`);
  if (JSON.stringify(all) !== JSON.stringify(want)) {
    throw new Error(`after scrolling the timeline is not every post once, newest first: ${JSON.stringify(all)}`);
  }
  await alice.locator('#timeline-more').waitFor({ state: 'hidden', timeout: LOCAL_MS });
  await shot('alice', '9-alice-scrolled-to-the-oldest');
  // A new post still appears at the top, and the older ones stay.
  await alice.evaluate(async () => {
    await fetch('/api/feed/posts', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ text: 'newest of all', audience: 'me' }),
    });
  });
  await alice.waitForFunction(
    (n) => {
      const texts = [...document.querySelectorAll('#timeline article .text')].map((e) => e.textContent);
      return texts[0] === 'newest of all' && texts.length === n + 1 && texts[n] === 'older 0';
    },
    OLDER,
    { timeout: LIVE_MS },
  ).catch(async () => {
    throw new Error(`a new post did not appear on top of the scrolled timeline: ${JSON.stringify(await articleTexts())}`);
  });

  begin('neither page reloaded');
  for (const [who, page] of Object.entries(pages)) {
    if (!(await page.evaluate(() => window.kithNoReload === true))) throw new Error(`${who}'s page reloaded`);
  }
  if (problems.length) throw new Error(problems.join('\n'));
  log('all steps passed');
} catch (err) {
  failed = true;
  console.error(`[feed.mjs] FAILED at step "${step}": ${err && err.stack ? err.stack : err}`);
  for (const p of problems) console.error(`[feed.mjs] ${p}`);
  for (const who of Object.keys(pages)) {
    try {
      await shot(who, `failure-${who}`);
    } catch (e) {
      console.error(`[feed.mjs] no failure screenshot for ${who}: ${e.message}`);
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
