/**
 * Everything of the screen module but the committed model: importing this never decodes the
 * ~700 KB model file, so code that only validates, decides or learns (the server's engine, the
 * CLI) starts without it. `@countersign/core/screen` re-exports all of it plus `DEFAULT_SCREEN_MODEL`.
 */

export { screen, prepare, route, parseScreenRequest, type Segment, type Prepared } from './screen.ts';
export { normalize, type Normalized, type NormFinding, type NormKind, type DecodedSpan } from './normalize.ts';
export { sanitize, type SanitizeOptions, type Sanitized } from './sanitize.ts';
export { findTemplateTokens } from './tokens.ts';
export { literalLeaves, sentences, proseWindows, type Leaf } from './segment.ts';
export { COMMITTED_MODEL_VERSION, loadModel, serializeModel, type ScreenModel, type ChannelModel, type SerializedModel } from './model.ts';
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
export {
  requestTexts,
  screenRequestText,
  screeningEffect,
  unscreenedResult,
  MAX_SCREENED_FIELDS,
  MAX_RECORDED_FINDINGS,
  SCREENING_RULE,
  SCREENING_BIDI_RULE,
  SCREENING_BUDGET_RULE,
  type RequestText,
  type RequestFinding,
  type RequestScreening,
  type ScreeningOutcome,
} from './request.ts';
export { boundPath, keyPath, pathStep, parseFieldPath, textAtPath, KEY_STEP, MAX_PATH, MAX_STEP } from './fields.ts';
export {
  retrain,
  retrainModel,
  retrainVersion,
  verdictExamples,
  verdictSamples,
  teachingExamples,
  flippedToAllow,
  MIN_AGREEING_REVIEWERS,
  evaluationSummary,
  gateReport,
  gateFloors,
  MAX_EXAMPLE_CHARS,
  type VerdictExample,
  type RetrainInput,
  type RetrainReport,
  type RetrainSetReport,
} from './retrain.ts';
export { EVAL_FLOORS, EVAL_THRESHOLD, schemes as evaluationSchemes, type Scheme, type Fold } from './evaluate.ts';
export { DEFAULT_TRAIN, type TrainingDoc, type TrainOptions } from './train.ts';
