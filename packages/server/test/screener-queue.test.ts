/**
 * The screener's queues (engine/screener.ts): `POST /v1/screen` texts have their own small queue,
 * bounded per caller (RATE_LIMITED with retryAfter), create bodies go first, a wait has a deadline,
 * and a worker that dies at startup fails what waits closed instead of restarting in a loop.
 */
import { CountersignError } from '@countersign/core';
import { DEFAULT_SCREENING } from '@countersign/core/screen';
import { describe, expect, it } from 'vitest';
import { Screener, TEXT_PER_CALLER } from '../src/engine/screener.ts';

const big = 'Plain prose about quarterly numbers and the weather. '.repeat(2000); // ~100 KB: worker path

class BrokenScreener extends Screener {
  starts = 0;
  protected override workerUrl(): URL {
    this.starts++;
    return new URL('./fixtures/broken-screen-worker.mjs', import.meta.url);
  }
}

describe('screener queues', () => {
  it(`one caller gets at most ${TEXT_PER_CALLER} large texts in the worker at once; the next is RATE_LIMITED with retryAfter; others still get in`, async () => {
    const s = new Screener();
    try {
      const mine = Array.from({ length: TEXT_PER_CALLER }, () => s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:a'));
      const refused = await s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:a').then(
        () => null,
        (e: unknown) => e,
      );
      expect(refused).toBeInstanceOf(CountersignError);
      expect((refused as CountersignError).code).toBe('RATE_LIMITED');
      expect((refused as CountersignError).details).toMatchObject({ retryAfter: expect.any(Number) });
      const other = s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:b');
      for (const r of await Promise.all([...mine, other])) expect(r.findings.some((f) => f.kind === 'unscreened')).toBe(false);
      // Slots are given back: the first caller may screen again.
      const again = await s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:a');
      expect(again.findings.some((f) => f.kind === 'unscreened')).toBe(false);
    } finally {
      await s.close();
    }
  }, 120_000);

  it('a full text queue refuses with RATE_LIMITED and never makes a create "busy"', async () => {
    const s = new Screener({ maxQueue: 1, maxTextQueue: 2 });
    try {
      // Queued synchronously, before the worker is ready: the text queue is full.
      const flood = Array.from({ length: 2 }, (_, i) => s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, `agent:${i}`));
      await expect(s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:x')).rejects.toMatchObject({ code: 'RATE_LIMITED' });
      const r = await s.screen({ args: { log: big } }, DEFAULT_SCREENING);
      expect(r.unscreened).toBeUndefined();
      await Promise.all(flood);
    } finally {
      await s.close();
    }
  }, 120_000);

  it('a job that waits past the queue deadline fails closed (the create goes to review, saying why)', async () => {
    const s = new Screener({ queueTimeoutMs: 1 });
    try {
      const first = s.screen({ args: { log: big } }, DEFAULT_SCREENING); // takes the worker (once it starts)
      const second = await s.screen({ args: { log: `${big} second` } }, DEFAULT_SCREENING);
      expect(second.unscreened).toMatch(/waited longer than 1 ms/);
      expect(second.overBudget).toBe(true);
      await first;
    } finally {
      await s.close();
    }
  }, 120_000);

  it('a worker that fails at startup does not spin: what waits ends unscreened (review), and new work is refused for a while', async () => {
    const s = new BrokenScreener();
    try {
      const jobs = [s.screen({ args: { log: big } }, DEFAULT_SCREENING), s.screen({ args: { log: `${big}2` } }, DEFAULT_SCREENING)];
      const results = await Promise.all(jobs);
      for (const r of results) expect(r.unscreened).toMatch(/failed to start/);
      const text = await s.screenText({ text: big, channel: 'content' }, DEFAULT_SCREENING, 'agent:a');
      expect(text.findings[0]?.kind).toBe('unscreened');
      await new Promise((r) => setTimeout(r, 300));
      expect(s.starts).toBe(1);
    } finally {
      await s.close();
    }
  }, 120_000);
});
