import type { Engine } from './engine.ts';

/**
 * Expires pending requests whose agent-set deadline (`timeoutSeconds`) passed, once a second.
 * Deadlines are rows, so a restarted process still expires what came due while it was down.
 * A failed sweep is reported and retried on the next tick; it never crashes the process.
 */
export function startExpirySweeper(engine: Engine, options: { intervalMs?: number; onError?: (err: unknown) => void } = {}): () => void {
  let sweeping = false;
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    engine
      .expireDue()
      .catch((err: unknown) => options.onError?.(err))
      .finally(() => (sweeping = false));
  }, options.intervalMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}
