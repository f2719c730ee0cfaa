/**
 * Input screening: is there a prompt injection in what an AI is given? Pure: the model and the
 * config are passed in; `DEFAULT_SCREEN_MODEL` is the committed model, trained by
 * `npm run train:screen` from data/prompt-injection.
 *
 * @example
 * import { screen, DEFAULT_SCREEN_MODEL, DEFAULT_SCREENING } from '@countersign/core';
 * screen({ content: toolOutput, channel: 'content' }, DEFAULT_SCREEN_MODEL, DEFAULT_SCREENING);
 */
import { loadModel, type ScreenModel } from './model.ts';
import { DEFAULT_MODEL_DATA } from './model.generated.ts';

export * from './api.ts';

/** The committed model, decoded once at import. */
export const DEFAULT_SCREEN_MODEL: ScreenModel = loadModel(DEFAULT_MODEL_DATA);
