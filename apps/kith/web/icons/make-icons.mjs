// Draws the app's icons (the favicon's "k" on kith green) as PNG files:
//
//   node apps/kith/web/icons/make-icons.mjs
//
// Plain node (zlib), no dependencies; the PNGs it writes are committed
// beside it and embedded in the binary (src/web.rs). `maskable` icons fill
// the whole square and keep the letter inside the central 80 % safe zone,
// as the web app manifest's `purpose: "maskable"` asks.

import { deflateSync } from 'node:zlib';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const GREEN = [0x2f, 0x6f, 0x5e];
const WHITE = [0xff, 0xff, 0xff];

const crcTable = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc(body));
  return Buffer.concat([len, body, sum]);
}

/** Distance from point p to the segment a–b. */
function segment(px, py, ax, ay, bx, by) {
  const dx = bx - ax;
  const dy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)));
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Coverage in 0..1 of the letter "k" at (x, y), in units of the letter's box (0..1). */
function letter(x, y) {
  const w = 0.11; // half the stroke width
  const d = Math.min(
    segment(x, y, 0.3, 0.12, 0.3, 0.88),
    segment(x, y, 0.3, 0.62, 0.72, 0.36),
    segment(x, y, 0.45, 0.52, 0.74, 0.88),
  );
  return d <= w ? 1 : 0;
}

/** An RGBA icon of `size` pixels; `maskable`: full bleed, letter in the safe zone. */
function icon(size, maskable) {
  const rows = [];
  const ss = 4; // samples per pixel side, for smooth edges
  const radius = maskable ? 0 : 0.5; // the round icon is a circle, as the favicon
  const box = maskable ? 0.56 : 0.62; // the letter's box, as a share of the side
  for (let py = 0; py < size; py++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let px = 0; px < size; px++) {
      let bg = 0;
      let fg = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (px + (sx + 0.5) / ss) / size;
          const y = (py + (sy + 0.5) / ss) / size;
          const inside = maskable || Math.hypot(x - 0.5, y - 0.5) <= radius;
          if (!inside) continue;
          bg++;
          const lx = (x - (1 - box) / 2) / box;
          const ly = (y - (1 - box) / 2) / box;
          if (lx >= 0 && lx <= 1 && ly >= 0 && ly <= 1) fg += letter(lx, ly);
        }
      }
      const n = ss * ss;
      const a = bg / n;
      const f = bg ? fg / bg : 0;
      const o = 1 + px * 4;
      for (let c = 0; c < 3; c++) row[o + c] = Math.round(GREEN[c] * (1 - f) + WHITE[c] * f);
      row[o + 3] = Math.round(255 * a);
    }
    rows.push(row);
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header[8] = 8; // bit depth
  header[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const here = dirname(fileURLToPath(import.meta.url));
for (const [name, size, maskable] of [
  ['icon-192.png', 192, false],
  ['icon-512.png', 512, false],
  ['maskable-512.png', 512, true],
]) {
  writeFileSync(join(here, name), icon(size, maskable));
  console.log(`wrote ${name}`);
}
