/**
 * Runs in a worker thread: screens create bodies off the event loop (screener.ts posts them).
 * Each message is `{ id, body, config }` (a create body) or `{ id, text, config }` (a `POST /v1/screen`
 * request); each answer `{ id, result }` or `{ id, error }`.
 */
import { parentPort } from 'node:worker_threads';
import { DEFAULT_SCREEN_MODEL, loadModel, screen, screenRequestText, type ScreeningConfig, type ScreenModel, type ScreenRequest, type SerializedModel } from '@countersign/core/screen';

/** Adopted models (engine/screen-models.ts) by hash; the screener sends each one's data once. The newest four are kept (the screener forgets in the same order). */
const models = new Map<string, ScreenModel>();

const port = parentPort;
if (!port) throw new Error('screen-worker.ts runs only as a worker thread');
port.on('message', (msg: { id: number; body?: Parameters<typeof screenRequestText>[0]; text?: ScreenRequest; config: ScreeningConfig; modelHash?: string; modelData?: SerializedModel }) => {
  try {
    if (msg.modelHash !== undefined && msg.modelData !== undefined && !models.has(msg.modelHash)) {
      models.set(msg.modelHash, loadModel(msg.modelData));
      for (const k of models.keys()) if (models.size > 4) models.delete(k);
    }
    const model = msg.modelHash === undefined ? DEFAULT_SCREEN_MODEL : models.get(msg.modelHash);
    if (!model) throw new Error(`screen model ${msg.modelHash} is not loaded in the worker`);
    const result = msg.text ? screen(msg.text, model, msg.config) : screenRequestText(msg.body ?? {}, model, msg.config);
    port.postMessage({ id: msg.id, result });
  } catch (err) {
    port.postMessage({ id: msg.id, error: (err as Error).message ?? String(err) });
  }
});
port.postMessage({ ready: true });
