/**
 * The background loop that signs checkpoints: every `checkpointEvery` entries or
 * `checkpointSeconds` seconds (whichever comes first, and only when the trail grew), and once
 * more on shutdown so an export right after covers everything. Errors are reported, never thrown.
 */
import type { Engine } from '../engine/engine.ts';
import type { AuditConfig } from './config.ts';

export interface Checkpointer {
  /** Stops the loop and signs a last checkpoint. */
  stop(): Promise<void>;
}

export function startCheckpointer(
  engine: Engine,
  config: Pick<AuditConfig, 'checkpointEvery' | 'checkpointSeconds'>,
  options: { intervalMs?: number; onError?: (err: unknown) => void } = {},
): Checkpointer {
  const onError = options.onError ?? (() => {});
  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = running.then(() => engine.trail.checkpointIfDue(config.checkpointEvery, config.checkpointSeconds * 1000)).catch(onError);
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
