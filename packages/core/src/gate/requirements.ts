/**
 * What approving a payload needs: the union of what the request as asked needs and what the
 * payload that will run needs on its own (issue 12, findings 1 and 2: an alternative or a
 * modification was judged by the original's assessment, so a blocked action offered as an
 * alternative of `send_alert` was approved by one reviewer).
 *
 * - every stage of both, in the payload's order with the original's merged in (mergeStages), a
 *   stage both name (same role, group and operators) once, at the larger count — so the larger
 *   quorum wins;
 * - step-up MFA if either needs it, WebAuthn only if either needs that; the number-matching code if either is at a level that
 *   needs one (critical);
 * - the smaller `deny` (fewer rejections decide);
 * - the higher risk level (the one velocity limits and cool-downs are counted at);
 * - any block wins: a blocked payload can never be approved;
 * - with `modifiedNeedsSecondReviewer` (either side), a payload other than the original needs
 *   one approval more at its last stage.
 */
import type { ApprovalRequirement, ApprovalStage, Assessment, RiskLevel } from '../schemas.ts';
import { levelRank } from '../policy/util.ts';

export interface PayloadRequirement {
  readonly stages: readonly ApprovalStage[];
  readonly deny: number;
  readonly mfa: boolean;
  /** The step-up must be a WebAuthn assertion (either side's level says `mfa: webauthn`). */
  readonly webauthn: boolean;
  readonly matchCode: boolean;
  readonly riskLevel: RiskLevel;
  /** Names of the rules that block this payload (its own, or the request's); empty when none. */
  readonly blockedBy: readonly string[];
}

/** The default when a reviewed request's assessment carries no requirement: one reviewer. */
const ONE_REVIEWER: ApprovalRequirement = { stages: [{ count: 1, label: '1 reviewer' }], deny: 1 };

/** Risk levels whose approvals must repeat the request card's match code. */
export const MATCH_CODE_LEVELS: readonly RiskLevel[] = Object.freeze(['critical']);

function stageKey(s: ApprovalStage): string {
  return JSON.stringify([s.role ?? null, s.group ?? null, s.operators ? [...s.operators].sort() : null]);
}

function blockedBy(a: Assessment): string[] {
  if (a.route !== 'block') return [];
  const named = a.matchedRules.filter((m) => m.effects.includes('block')).map((m) => m.name);
  // A block route with no named rule is still a block (fail closed).
  return named.length > 0 ? named : ['policy'];
}

/**
 * `extra`'s stages merged into `base`, keeping `base`'s order. Each stage of `extra` is matched
 * one-to-one to an unclaimed stage of the same terms (raised to the larger count), looked for
 * after the place of `extra`'s previous stage first, so both orders are kept where they agree;
 * where they conflict `base`'s wins. An unmatched stage is inserted right after that place, so
 * it keeps its position relative to its neighbours. Nothing is lost: two identical stages of
 * one side stay two.
 */
function mergeStages(base: readonly ApprovalStage[], extra: readonly ApprovalStage[]): ApprovalStage[] {
  const out = base.map((stage) => ({ stage: { ...stage }, claimed: false }));
  let anchor = -1;
  for (const s of extra) {
    const k = stageKey(s);
    const free = (j: number) => !out[j]!.claimed && stageKey(out[j]!.stage) === k;
    let i = out.findIndex((_, j) => j > anchor && free(j));
    if (i < 0) i = out.findIndex((_, j) => free(j));
    if (i < 0) {
      i = anchor + 1;
      out.splice(i, 0, { stage: { ...s }, claimed: true });
    } else {
      out[i]!.claimed = true;
      if (s.count > out[i]!.stage.count) out[i]!.stage = { ...s };
    }
    anchor = Math.max(anchor, i);
  }
  return out.map((x) => x.stage);
}

/**
 * The requirement of approving `payload` (its own assessment; null when it is the request as
 * asked) on a request assessed as `original`. `modified` says the payload differs from the
 * original (an alternative or changed args).
 */
export function payloadRequirement(original: Assessment, payload: Assessment | null, modified: boolean): PayloadRequirement {
  const sides = payload === null ? [original] : [original, payload];
  let deny = Number.POSITIVE_INFINITY;
  let second = false;
  // A side that would not be reviewed (auto-approved on its own) still needs what the other
  // demands; a reviewed side with no requirement needs one reviewer.
  const reqs = sides.map((a) => a.approval ?? (a.route === 'review' ? ONE_REVIEWER : null));
  for (const req of reqs) {
    if (req === null) continue;
    deny = Math.min(deny, req.deny);
    second ||= req.modifiedNeedsSecondReviewer === true;
  }
  // The payload's stages in its own order (G4: `[director]` ∪ `[manager, director]` ran the
  // director first); the original's are merged in (mergeStages).
  const [base, extra] = payload === null ? [reqs[0], null] : [reqs[1] ?? reqs[0], reqs[1] ? reqs[0] : null];
  const stages: ApprovalStage[] = mergeStages(base?.stages ?? [], extra?.stages ?? []);
  if (stages.length === 0) stages.push({ ...ONE_REVIEWER.stages[0]! });
  if (second && modified) {
    const last = stages.length - 1;
    const s = stages[last]!;
    stages[last] = { ...s, count: s.count + 1, label: `${s.label} + 1 more (modified)` };
  }
  const riskLevel = sides.reduce<RiskLevel>((m, a) => (levelRank(a.riskLevel) > levelRank(m) ? a.riskLevel : m), original.riskLevel);
  return {
    stages,
    deny: Number.isFinite(deny) ? deny : 1,
    mfa: sides.some((a) => a.mfaRequired),
    webauthn: sides.some((a) => a.mfaRequired && a.webauthnRequired === true),
    matchCode: sides.some((a) => MATCH_CODE_LEVELS.includes(a.riskLevel)),
    riskLevel,
    blockedBy: [...new Set(sides.flatMap(blockedBy))],
  };
}
