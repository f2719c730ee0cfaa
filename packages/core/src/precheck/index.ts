export { MAX_PRECHECKS, PrecheckFile, PrechecksFile } from './schema.ts';
export { DEFAULT_PRECHECK_TIMEOUT_MS, type PrecheckConfig, type PrecheckOutcome, type PrecheckResult, type PrecheckVerdict } from './types.ts';
export { aggregateMemberPrecheck, applicablePrechecks, precheckEffects, precheckIdentityText, precheckOutcomes, precheckRule, resolvePrecheck, type PrecheckEffect } from './outcomes.ts';
export { MAX_PRECHECK_BODY_BYTES, precheckRequestBody, precheckWireBody, type PrecheckRequestBody, type PrecheckSubject } from './body.ts';
export { MAX_PRECHECK_REASONS, MAX_PRECHECK_REASON_CHARS, MAX_PRECHECK_RESPONSE_BYTES, cleanReason, readValidatorAnswer, strictJson, type ValidatorAnswer } from './response.ts';
