/**
 * The background loop that signs checkpoints: every `checkpointEvery` entries or
 * `checkpointSeconds` seconds (whichever comes first, and only when the trail grew), and once
 * more on shutdown so an export right after covers everything. Every `pruneEveryMs` it also
 * applies retention (`retentionDays`). Errors are reported, never thrown.
 */
import type { Engine } from '../engine/engine.ts';
import type { AuditConfig } from './config.ts';
import { inBackground } from '../store/sqlite-busy.ts';

export interface Checkpointer {
  /** Stops the loop and signs a last checkpoint. */
  stop(): Promise<void>;
}

export function startCheckpointer(
  engine: Engine,
  config: Pick<AuditConfig, 'checkpointEvery' | 'checkpointSeconds'> & Partial<Pick<AuditConfig, 'retentionDays'>>,
  options: { intervalMs?: number; pruneEveryMs?: number; onError?: (err: unknown) => void } = {},
): Checkpointer {
  const onError = options.onError ?? (() => {});
  const pruneEvery = options.pruneEveryMs ?? 3_600_000;
  let pruned = 0;
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = running
      .then(() => inBackground(async () => {
        await engine.trail.checkpointIfDue(config.checkpointEvery, config.checkpointSeconds * 1000);
        if (config.retentionDays && Date.now() - pruned >= pruneEvery) {
          pruned = Date.now();
          await engine.trail.prune(config.retentionDays);
        }
      }))
      .catch(onError);
  };
  tick();
  const timer = setInterval(tick, options.intervalMs ?? 1000);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await engine.trail.checkpoint().catch(onError);
    },
  };
}
