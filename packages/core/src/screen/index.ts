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

export { screen, prepare, route, parseScreenRequest, type Segment, type Prepared } from './screen.ts';
export { normalize, type Normalized, type NormFinding, type NormKind, type DecodedSpan } from './normalize.ts';
export { sanitize, type SanitizeOptions, type Sanitized } from './sanitize.ts';
export { findTemplateTokens } from './tokens.ts';
export { literalLeaves, sentences, proseWindows, type Leaf } from './segment.ts';
export { loadModel, serializeModel, type ScreenModel, type ChannelModel, type SerializedModel } from './model.ts';
export { CUE_NAMES, HASH_BITS, type CueName } from './features.ts';
export {
  ScreeningPolicy,
  ScreenRequest,
  DEFAULT_BANDS,
  DEFAULT_SCREENING,
  resolveScreening,
  type ScreeningConfig,
  type ScreenBand,
  type ScreenEffect,
} from './schema.ts';
export * from './learn.ts';
export {
  CHANNELS,
  SCREEN_ACTIONS,
  SEVERITIES,
  type Channel,
  type ScreenAction,
  type ScreenFinding,
  type ScreenResult,
  type Severity,
  type Span,
} from './types.ts';

/** The committed model, decoded once at import. */
export const DEFAULT_SCREEN_MODEL: ScreenModel = loadModel(DEFAULT_MODEL_DATA);
export {
  requestTexts,
  screenRequestText,
  screeningEffect,
  unscreenedResult,
  MAX_SCREENED_FIELDS,
  MAX_RECORDED_FINDINGS,
  SCREENING_RULE,
  SCREENING_BUDGET_RULE,
  type RequestText,
  type RequestFinding,
  type RequestScreening,
  type ScreeningOutcome,
} from './request.ts';
