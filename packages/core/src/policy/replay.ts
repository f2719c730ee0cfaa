/**
 * What-if replay, the re-evaluation half: a stored request's inputs under a candidate policy →
 * the assessment the create path would have made. It calls the create path's own `evaluate()`
 * and `checkArgs()`; there is no second evaluator.
 *
 * What is replayed exactly, and what is not (the report says so, see replay-report.ts):
 * - the request as the agent sent it (action, args, description, confidence, risk hint,
 *   context, alternatives, approvers, timeout) and its creation time (time-window rules);
 * - the agent's history as the create saw it: the stored assessment's `history` factor names the
 *   four counts the risk score reads, so they are read back from it (`historyFromAssessment`);
 *   an assessment without them replays with no history and is counted;
 * - a review forced by server state at the time (the agent paused with `whilePaused: hold`, a
 *   slicing hold) is kept as it was: the candidate cannot undo a pause or an alert that existed
 *   then, even if its `whilePaused` or `onSlicing` differ;
 * - not replayed at all: creates that were refused before anything was stored (rate limits, a
 *   paused agent under `whilePaused: refuse`, bad args under the old policy), and the velocity,
 *   cool-down and slicing state a candidate would have built up differently.
 */
import type { Alternative, ApproverSpec, Assessment, CreateRequest, RiskLevel } from '../schemas.ts';
import { checkArgs } from './args.ts';
import { evaluate } from './evaluate.ts';
import { EMPTY_HISTORY, type HistoryStats, type Policy } from './types.ts';

/** A request as the store keeps it, with what its create was judged on. */
export interface StoredRequestInput {
  readonly id: string;
  readonly agent: string;
  readonly action: string;
  readonly args: Readonly<Record<string, unknown>>;
  readonly description?: string | undefined;
  readonly confidence?: number | undefined;
  readonly riskHint?: RiskLevel | undefined;
  readonly context?: CreateRequest['context'] | undefined;
  readonly alternatives?: readonly Alternative[] | undefined;
  readonly approvers?: readonly ApproverSpec[] | undefined;
  readonly timeoutSeconds?: number | undefined;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  /** The assessment the create stored. */
  readonly assessment: Assessment;
}

export type ReplayOutcome =
  | { readonly refused: false; readonly assessment: Assessment; readonly exactHistory: boolean; readonly keptHold: string | null }
  /** The candidate's argument rules would refuse the create (VALIDATION_FAILED) before anything is stored. */
  | { readonly refused: true; readonly errors: readonly string[]; readonly exactHistory: boolean; readonly keptHold: string | null };

/** Rules the server adds from its own state at create time (guard/service.ts `createGate`), not from the policy. */
export function isServerHold(ruleName: string): boolean {
  return ruleName === 'agent-paused' || ruleName.startsWith('slicing-alert:') || ruleName.startsWith('slicing-aggregate:');
}

// Written by risk.ts `history()`: "12 past outcomes (9 approved, 3 rejected, 0 succeeded, 0 failed; 25% bad)".
const HISTORY_DETAIL = /^(\d{1,9}) past outcomes \((\d{1,9}) approved, (\d{1,9}) rejected, (\d{1,9}) succeeded, (\d{1,9}) failed; /;
const NO_HISTORY_DETAIL = 'no history for this agent and action';

/**
 * The history counts a stored assessment was scored with, read back from its `history` factor;
 * undefined when the assessment does not say (then the replay uses none, and counts it).
 */
export function historyFromAssessment(assessment: Pick<Assessment, 'factors'>): HistoryStats | undefined {
  const factor = assessment.factors.find((f) => f.name === 'history');
  if (!factor || typeof factor.detail !== 'string' || factor.detail.length > 200) return undefined;
  if (factor.detail === NO_HISTORY_DETAIL) return EMPTY_HISTORY;
  const m = HISTORY_DETAIL.exec(factor.detail);
  if (!m) return undefined;
  const [approved, rejected, succeeded, failed] = [m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number];
  return { total: Number(m[1]), approved, rejected, succeeded, failed };
}

/** Re-evaluates one stored request under `policy`, exactly as its create would have been judged (see the file comment for the limits). */
export function replayRequest(stored: StoredRequestInput, policy: Policy): ReplayOutcome {
  const history = historyFromAssessment(stored.assessment);
  const hold = stored.assessment.matchedRules.find((r) => isServerHold(r.name));
  const keptHold = hold ? hold.name : null;
  const exactHistory = history !== undefined;
  const argErrors = checkArgs(policy, stored.action, stored.args);
  if (argErrors.length > 0) return { refused: true, errors: argErrors, exactHistory, keptHold };
  const body: CreateRequest = {
    action: stored.action,
    args: { ...stored.args },
    ...(stored.description !== undefined ? { description: stored.description } : {}),
    ...(stored.confidence !== undefined ? { confidence: stored.confidence } : {}),
    ...(stored.riskHint !== undefined ? { riskLevel: stored.riskHint } : {}),
    ...(stored.context !== undefined ? { context: stored.context } : {}),
    ...(stored.alternatives !== undefined && stored.alternatives.length > 0 ? { alternatives: [...stored.alternatives] } : {}),
    ...(stored.approvers !== undefined && stored.approvers.length > 0 ? { approvers: [...stored.approvers] } : {}),
    ...(stored.timeoutSeconds !== undefined ? { timeoutSeconds: stored.timeoutSeconds } : {}),
  };
  const assessment = evaluate(
    { ...body, agent: stored.agent, forcedReview: hold ? { rule: hold.name, reason: hold.reason } : undefined },
    policy,
    history ?? EMPTY_HISTORY,
    new Date(stored.createdAt),
  );
  return { refused: false, assessment, exactHistory, keptHold };
}
