/** A validator as the policy resolves it (`Policy.prechecks`), and what a call to one came to. */
import type { RiskLevel } from '../schemas.ts';

export const DEFAULT_PRECHECK_TIMEOUT_MS = 2_000;

export interface PrecheckConfig {
  readonly name: string;
  readonly kind: 'http' | 'opa';
  readonly url: string;
  /** OPA's document path (kind opa), else null. */
  readonly path: string | null;
  readonly timeoutMs: number;
  readonly onError: 'deny' | 'allow' | 'raise';
  /** Normal-form action names, or null for every action; risk levels, or null for every level. */
  readonly when: { readonly actions: readonly string[] | null; readonly risk: readonly RiskLevel[] | null };
  readonly raiseTo: RiskLevel;
  readonly headersEnv: string | null;
}

/**
 * One validator's answer (the server's caller makes these): `allow`/`deny` as it said, or
 * `error` (timeout, non-2xx, wrong content type, malformed or oversized body) with `error` saying
 * which. `identity` is the hash of the validator's canonical config when it was called
 * (precheckIdentityText), so a result is never read under a changed validator (F1).
 */
export interface PrecheckResult {
  readonly name: string;
  readonly identity: string;
  readonly status: 'allow' | 'deny' | 'error';
  readonly reasons: readonly string[];
  /** The validator asked to raise the risk to this level (http `risk`, OPA `result.risk`). */
  readonly raiseTo?: RiskLevel | undefined;
  readonly error?: string | undefined;
}

/** What one validator's result does under the current policy. */
export interface PrecheckVerdict {
  readonly name: string;
  readonly identity: string;
  readonly outcome: 'allow' | 'deny' | 'raise';
  /** The validator's own answer (`error` when it failed, `missing` when no current result exists). */
  readonly status: PrecheckResult['status'] | 'missing';
  readonly reasons: readonly string[];
  readonly raiseTo: RiskLevel | null;
}

export interface PrecheckOutcome {
  /** block: any validator denied; raise: none denied, some raised (to `raiseTo`, the highest); allow otherwise. */
  readonly effect: 'block' | 'raise' | 'allow';
  readonly raiseTo: RiskLevel | null;
  readonly verdicts: readonly PrecheckVerdict[];
}
