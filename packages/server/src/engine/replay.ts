/**
 * The what-if replay's shell (`POST /v1/policy/replay`): who may ask, the candidate validated as
 * activating it would be, the period's stored requests read page by page (newest first, at most
 * `limit`), each re-evaluated by core's `replayRequest` under the candidate and, as a self-check,
 * under the policy version that judged it; core's `ReplayAccumulator` compares and sums. Memory
 * stays bounded (one page of rows, a cache of parsed policy versions, the accumulator's counts
 * and examples), and nothing is written.
 */
import {
  CountersignError,
  ReplayAccumulator,
  parseDuration,
  parsePolicy,
  replayRequest,
  type Alternative,
  type ApproverSpec,
  type Assessment,
  type Policy,
  type ReplayReport,
  type RiskLevel,
  type StoredRequestInput,
} from '@countersign/core';
import { sha256Hex } from '../ids.ts';
import type { Engine } from './engine.ts';
import type { Principal } from './principal.ts';
import type { ReplayRow } from '../store/replay.ts';

/** Roles that may replay: those who write policy, and those who audit it. */
export const REPLAY_ROLES = ['admin', 'auditor'] as const;
export const DEFAULT_REPLAY_LIMIT = 10_000;
export const MAX_REPLAY_LIMIT = 100_000;
/** At most this long a period (as the reports). */
const MAX_PERIOD_MS = 3 * 366 * 86_400_000;
const PAGE = 500;
const MAX_CACHED_VERSIONS = 64;

export interface ReplayInput {
  /** The candidate policy, as YAML. */
  policy: string;
  /** `30d` (a duration back from now) or an ISO 8601 time. */
  since: string;
  limit?: number | undefined;
}

export type ReplayResult = ReplayReport & { candidate: { hash: string; rules: number } };

export async function replayPolicy(engine: Engine, by: Principal, input: ReplayInput): Promise<ReplayResult> {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'a replay needs an operator token');
  if (!by.roles.some((r) => (REPLAY_ROLES as readonly string[]).includes(r))) {
    throw new CountersignError('FORBIDDEN', `a replay needs one of the roles ${REPLAY_ROLES.join(', ')}`);
  }
  const candidate = engine.checkPolicy(input.policy, 'the candidate');
  const to = engine.clock();
  const from = sinceTime(input.since, to);
  const limit = input.limit ?? DEFAULT_REPLAY_LIMIT;

  const acc = new ReplayAccumulator({ from, to });
  const judging = new Map<number, Policy | null>();
  const judgingPolicy = async (version: number): Promise<Policy | null> => {
    if (judging.has(version)) return judging.get(version)!;
    const text = await engine.store.replay.policyText(version);
    const parsed = text === undefined ? undefined : parsePolicy(text);
    const policy = parsed?.ok ? parsed.policy : null;
    if (judging.size >= MAX_CACHED_VERSIONS) judging.clear();
    judging.set(version, policy);
    return policy;
  };

  let scanned = 0;
  let before: { createdAt: number; id: string } | undefined;
  let limitReached = false;
  for (;;) {
    const want = Math.min(PAGE, limit - scanned);
    const rows = await engine.store.replay.page(from, to, want, before);
    for (const row of rows) {
      scanned++;
      const stored = storedInput(row);
      if (stored === undefined) {
        acc.skip(Number(row.created_at));
        continue;
      }
      const baselinePolicy = await judgingPolicy(Number(row.policy_version));
      acc.add(stored, replayRequest(stored, candidate), baselinePolicy ? replayRequest(stored, baselinePolicy) : undefined);
    }
    const last = rows[rows.length - 1];
    if (!last || rows.length < want) break;
    before = { createdAt: Number(last.created_at), id: last.id };
    if (scanned >= limit) {
      // At the limit: say so only if anything older is left in the period.
      limitReached = (await engine.store.replay.page(from, to, 1, before)).length > 0;
      break;
    }
  }
  return { candidate: { hash: sha256Hex(input.policy), rules: candidate.rules.length }, ...acc.report({ limit, limitReached }) };
}

function sinceTime(since: string, now: number): number {
  const text = since.trim();
  const back = /^\d+(ms|s|m|h|d)$/.test(text) ? parseDuration(text) : undefined;
  let from: number;
  if (back !== undefined) from = now - back;
  else if (/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(text)) from = Date.parse(text);
  else from = Number.NaN;
  if (!Number.isFinite(from)) {
    throw new CountersignError('VALIDATION_FAILED', 'since must be a duration back from now (30d, 12h) or an ISO 8601 time (2026-01-31 or 2026-01-31T09:00:00Z)', { field: 'since' });
  }
  if (from >= now) throw new CountersignError('VALIDATION_FAILED', 'since must be in the past', { field: 'since' });
  if (now - from > MAX_PERIOD_MS) throw new CountersignError('VALIDATION_FAILED', 'a replay covers at most three years', { field: 'since' });
  return from;
}

/**
 * A stored row as the create saw it; undefined for what no agent filed (aggregate reviews) and for
 * a row that does not read back (a database edited by hand): skipped and counted, never guessed.
 */
function storedInput(row: ReplayRow): StoredRequestInput | undefined {
  if (row.action.startsWith('countersign.')) return undefined;
  try {
    const assessment = JSON.parse(row.assessment) as Assessment;
    const args = JSON.parse(row.args) as unknown;
    const context = JSON.parse(row.context) as unknown;
    const alternatives = JSON.parse(row.alternatives) as unknown;
    const approvers = JSON.parse(row.approvers) as unknown;
    if (!isObject(args) || !isObject(context) || !Array.isArray(alternatives) || !Array.isArray(approvers)) return undefined;
    if (!isObject(assessment) || !Array.isArray(assessment.factors) || !Array.isArray(assessment.matchedRules) || typeof assessment.route !== 'string') return undefined;
    return {
      id: row.id,
      agent: row.agent_name,
      action: row.action,
      args,
      ...(row.description !== null ? { description: row.description } : {}),
      ...(row.confidence !== null ? { confidence: Number(row.confidence) } : {}),
      ...(row.risk_hint !== null ? { riskHint: row.risk_hint as RiskLevel } : {}),
      // The create stored `{}` for no context; the evaluation reads both alike.
      context: context as StoredRequestInput['context'],
      // Stored alternatives carry the create's `blocked` mark; the agent sent them without it.
      alternatives: alternatives.map((a) => {
        if (!isObject(a)) return a as Alternative;
        const { blocked: _blocked, ...sent } = a;
        return sent as Alternative;
      }),
      approvers: approvers as ApproverSpec[],
      ...(row.timeout_seconds !== null ? { timeoutSeconds: Number(row.timeout_seconds) } : {}),
      createdAt: Number(row.created_at),
      assessment,
    };
  } catch {
    return undefined;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
