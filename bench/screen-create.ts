/**
 * Screening cost on the create path: what the event loop pays inline (bodies up to the inline
 * limit) and what a body at the 1 MiB server limit costs in the worker, with the longest
 * event-loop gap seen meanwhile. `node --import tsx bench/screen-create.ts`
 */
import { DEFAULT_SCREENING, resolveScreening, screenRequestText, DEFAULT_SCREEN_MODEL } from '@countersign/core/screen';
import { INLINE_MAX_CHARS, INLINE_MAX_FIELDS, Screener } from '../packages/server/src/engine/screener.ts';

const prose = (n: number): string => {
  const words = 'the service restarted after the deploy and latency stayed within the usual range for the region'.split(' ');
  let s = '';
  for (let i = 0; s.length < n; i++) s += words[i % words.length] + (i % 17 === 16 ? '. ' : ' ');
  return s.slice(0, n);
};

function time(fn: () => void, n: number): number {
  fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) fn();
  return (performance.now() - t) / n;
}

const inlineWorst = { args: Object.fromEntries(Array.from({ length: INLINE_MAX_FIELDS }, (_, i) => [`k${i}`, prose(Math.floor(INLINE_MAX_CHARS / INLINE_MAX_FIELDS))])) };
const inlineOne = { description: prose(INLINE_MAX_CHARS) };
console.log(`inline, ${INLINE_MAX_FIELDS} fields of ${INLINE_MAX_CHARS / INLINE_MAX_FIELDS} chars: ${time(() => screenRequestText(inlineWorst, DEFAULT_SCREEN_MODEL, DEFAULT_SCREENING), 20).toFixed(1)} ms`);
console.log(`inline, one ${INLINE_MAX_CHARS}-char description: ${time(() => screenRequestText(inlineOne, DEFAULT_SCREEN_MODEL, DEFAULT_SCREENING), 20).toFixed(1)} ms`);
const big = { description: 'Block', args: { log: prose(1_000_000) } };
for (const kib of [64, 256]) {
  const cfg = resolveScreening({ maxBytes: kib * 1024 });
  console.log(`on the main thread (what the worker spares), 1 MB body, budget ${kib} KiB: ${time(() => screenRequestText(big, DEFAULT_SCREEN_MODEL, cfg), 3).toFixed(0)} ms`);
}
const s = new Screener();
await s.screen(big, DEFAULT_SCREENING);
let gap = 0;
let last = performance.now();
const tick = setInterval(() => {
  const now = performance.now();
  gap = Math.max(gap, now - last);
  last = now;
}, 2);
const t = performance.now();
for (let i = 0; i < 5; i++) await s.screen(big, DEFAULT_SCREENING);
clearInterval(tick);
console.log(`worker, 1 MB body, default budget: ${((performance.now() - t) / 5).toFixed(0)} ms a request; longest event-loop gap meanwhile ${gap.toFixed(1)} ms`);
await s.close();
