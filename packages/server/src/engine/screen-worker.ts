/**
 * Runs in a worker thread: screens create bodies off the event loop (screener.ts posts them).
 * Each message is `{ id, body, config }` (a create body) or `{ id, text, config }` (a `POST /v1/screen`
 * request); each answer `{ id, result }` or `{ id, error }`.
 */
import { parentPort } from 'node:worker_threads';
import { DEFAULT_SCREEN_MODEL, screen, screenRequestText, type ScreeningConfig, type ScreenRequest } from '@countersign/core/screen';

const port = parentPort;
if (!port) throw new Error('screen-worker.ts runs only as a worker thread');
port.on('message', (msg: { id: number; body?: Parameters<typeof screenRequestText>[0]; text?: ScreenRequest; config: ScreeningConfig }) => {
  try {
    const result = msg.text ? screen(msg.text, DEFAULT_SCREEN_MODEL, msg.config) : screenRequestText(msg.body ?? {}, DEFAULT_SCREEN_MODEL, msg.config);
    port.postMessage({ id: msg.id, result });
  } catch (err) {
    port.postMessage({ id: msg.id, error: (err as Error).message ?? String(err) });
  }
});
port.postMessage({ ready: true });
