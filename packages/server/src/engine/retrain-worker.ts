/**
 * Runs in a worker thread: the screening retrain (core screen/retrain.ts), minutes of CPU on the
 * committed data, kept off the event loop. engine/screen-models.ts starts one per retrain and
 * ends it after the answer. The message is `{ corpus, examples, tolerance, baseVersion }`; the
 * answer `{ model, report }` or `{ error }`.
 *
 * `corpus` is the URL of a module exporting `loadDocs(): TrainingDoc[]` and, optionally,
 * `schemes(docs)` and `floors` (gateFloors' form): by default the clone's tools/screen/data.ts
 * (the committed data), in tests a small corpus.
 */
import { parentPort } from 'node:worker_threads';
import { gateFloors, retrain, type Scheme, type TrainingDoc, type VerdictExample } from '@countersign/core/screen/api';

interface Corpus {
  loadDocs: () => TrainingDoc[];
  schemes?: (docs: readonly TrainingDoc[]) => Scheme[];
  floors?: Record<string, number>;
}

const port = parentPort;
if (!port) throw new Error('retrain-worker.ts runs only as a worker thread');
port.once('message', async (msg: { corpus: string; examples: VerdictExample[]; tolerance: number; baseVersion: string }) => {
  try {
    const corpus = (await import(msg.corpus)) as Corpus;
    const docs = corpus.loadDocs();
    const { model, report } = retrain({
      docs,
      examples: msg.examples,
      baseVersion: msg.baseVersion,
      tolerance: msg.tolerance,
      floors: corpus.floors ?? gateFloors(),
      ...(corpus.schemes ? { schemes: corpus.schemes(docs) } : {}),
    });
    port.postMessage({ model, report });
  } catch (err) {
    port.postMessage({ error: (err as Error).message ?? String(err) });
  }
});
