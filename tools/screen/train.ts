/**
 * `npm run train:screen`: retrain both channel models from data/prompt-injection and write
 * packages/core/src/screen/model.generated.ts. Deterministic: run twice, get the same bytes
 * (`packages/core/test/screen-determinism.test.ts` checks it).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMMITTED_MODEL_VERSION } from '../../packages/core/src/screen/model.ts';
import { loadDocs } from './data.ts';
import { modelModuleText, trainModel } from './train-lib.ts';

export const MODEL_PATH = join(dirname(fileURLToPath(import.meta.url)), '../../packages/core/src/screen/model.generated.ts');
export const MODEL_VERSION = COMMITTED_MODEL_VERSION;

/** The generated module's text, trained from the committed data. */
export function trainedModuleText(): string {
  return modelModuleText(trainModel(loadDocs(), MODEL_VERSION));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const started = performance.now();
  const text = trainedModuleText();
  writeFileSync(MODEL_PATH, text);
  console.log(`wrote ${MODEL_PATH} (${(text.length / 1024).toFixed(0)} KiB) in ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
