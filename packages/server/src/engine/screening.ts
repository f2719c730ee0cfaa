/**
 * The screening learning loop's shell (the maths is core's screen/learn.ts): reviewers'
 * verdicts on screening findings, the random audit sample of auto-allowed requests, and the
 * reports built from verdicts — rates, a threshold proposal per channel, pattern suggestions.
 * The only writer of `screen_verdicts` and `screen_samples`.
 *
 * A verdict is separate from approve/reject and teaches only under the poisoning guards: only
 * operators holding one of `screening.learning.verdictRoles` may give one (agents never), and
 * they are re-checked against current roles when verdicts are read; the score a verdict counts
 * at is the one the server recorded at create time; each reviewer's verdicts share at most
 * `maxWeightPerSource` of weight. Nothing here changes a threshold or enables a pattern: the
 * proposal shows its measured effect and an admin applies it to the policy file.
 */
import { randomInt } from 'node:crypto';
import { CountersignError, type ApprovalRequest, type Assessment, type Policy } from '@countersign/core';
import {
  VERDICT_LABELS,
  acceptVerdicts,
  calibrateThreshold,
  selectAuditSample,
  textAtPath,
  suggestPatterns,
  verdictExamples,
  verdictRates,
  type Channel,
  type PatternSuggestion,
  type RequestScreening,
  type ScreenAction,
  type ScreenVerdict,
  type ThresholdProposal,
  type VerdictExample,
  type VerdictLabel,
  type VerdictRates,
} from '@countersign/core/screen/api';
import { actorOf, draft, type AuditWriter } from '../audit/writer.ts';
import { newId } from '../ids.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { Queries, Store } from '../store/store.ts';
import type { ScreenVerdictRow } from '../store/screening.ts';
import type { Principal } from './principal.ts';

export interface VerdictBody {
  /** Index into the request's `assessment.screening.findings`; omit for the request as a whole (an audit-sampled one). */
  finding?: number | undefined;
  verdict: VerdictLabel;
}

export interface VerdictView {
  id: string;
  requestId: string;
  finding: number | null;
  field: string;
  kind: string;
  score: number;
  action: ScreenAction;
  audited: boolean;
  verdict: VerdictLabel;
  operatorId: string;
  createdAt: string;
}

export interface LearningReport {
  window: { since: string; verdicts: number };
  guard: { verdictRoles: readonly string[]; maxWeightPerSource: number; refused: { unauthorised: number; unsure: number; superseded: number }; sources: { reviewer: string; verdicts: number; weightEach: number }[]; agents: { agent: string; verdicts: number; weight: number; share: number }[] };
  rates: VerdictRates;
  calibration: Record<Channel, ThresholdProposal & { policySnippet: string | null }>;
  auditSample: { rate: number; sampled: number };
}

/** Verdicts read for reports: the last 90 days. */
const REPORT_WINDOW_MS = 90 * 24 * 60 * 60 * 1000;
/** Requests whose text pattern suggestions read, at most. */
const MAX_PATTERN_REQUESTS = 500;
/** Requests whose judged text the retrain reads, at most (the newest verdicts' first). */
const MAX_RETRAIN_REQUESTS = 5_000;

export interface ScreeningDeskDeps {
  store: Store;
  writer: AuditWriter;
  now: () => number;
  policy: () => Policy;
  /** Reads a request as `by` may see it (the engine's read check). */
  getRequest: (by: Principal, id: string) => Promise<ApprovalRequest>;
  /** Uniform in [0, 1); crypto by default (tests pass a seeded one). */
  random?: () => number;
  /** Reads a request for the retrain (no viewer: the text as filed); undefined when it is gone. */
  readRequest?: (id: string) => Promise<ApprovalRequest | undefined>;
  /** MACs each verdict row; rows that do not verify are not used. */
  secret: ServerSecret;
  /** The operators who pass a login's checks now (engine/credentials.ts activeOperators: MAC, not disabled, not removed). */
  activeOperators: () => Promise<readonly { operatorId: string; roles: readonly string[] }[]>;
}

const VERDICT_MAC = 'screen-verdict';

/** The fields a verdict row's MAC covers: all of them. */
function verdictFields(r: ScreenVerdictRow): unknown[] {
  return [r.id, r.request_id, r.finding, r.field, r.kind, r.channel, r.score, r.action, r.audited, r.verdict, r.operator_id, r.agent_id, r.created_at];
}

export class ScreeningDesk {
  private readonly random: () => number;

  constructor(private readonly deps: ScreeningDeskDeps) {
    this.random = deps.random ?? (() => randomInt(2 ** 47) / 2 ** 47);
  }

  /**
   * Before a create: does this request enter the audit sample? An allowed screening does with
   * probability `learning.auditRate` (core selectAuditSample).
   */
  drawSample(requestId: string, result: RequestScreening | undefined): boolean {
    const rate = this.deps.policy().screening.learning.auditRate;
    if (!result || result.overBudget || rate === 0) return false;
    return selectAuditSample([{ id: requestId, action: result.action }], { rate, max: 1 }, this.random).length > 0;
  }

  /** In the create transaction: record a drawn sample (the `created` entry says `screening.sampled`). */
  async recordSample(tx: Queries, requestId: string, result: RequestScreening, at: number): Promise<void> {
    await tx.screening.insertSample({ request_id: requestId, score: result.score, created_at: at });
  }

  /** Who may teach the screen: an operator holding one of the policy's verdict roles. */
  private authorisedRoles(roles: readonly string[]): boolean {
    const allowed = this.deps.policy().screening.learning.verdictRoles;
    return roles.some((r) => allowed.includes(r));
  }

  async giveVerdict(by: Principal, requestId: string, body: VerdictBody): Promise<VerdictView> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot give screening verdicts');
    if (!this.authorisedRoles(by.roles)) {
      throw new CountersignError('FORBIDDEN', `screening verdicts need one of the roles ${this.deps.policy().screening.learning.verdictRoles.join(', ')}`);
    }
    if (!VERDICT_LABELS.includes(body.verdict)) throw new CountersignError('VALIDATION_FAILED', `verdict must be one of ${VERDICT_LABELS.join(', ')}`);
    const request = await this.deps.getRequest(by, requestId);
    const screening = request.assessment.screening;
    const sample = await this.deps.store.screening.sample(request.id);
    let item: { finding: number; field: string; kind: string; score: number; action: ScreenAction };
    if (body.finding !== undefined) {
      const f = screening?.findings[body.finding];
      if (!Number.isInteger(body.finding) || !f) throw new CountersignError('VALIDATION_FAILED', `request ${request.id} has no screening finding ${body.finding}`, { findings: screening?.findings.length ?? 0 });
      item = { finding: body.finding, field: f.field, kind: f.kind, score: f.score, action: (screening as NonNullable<Assessment['screening']>).action };
    } else if (screening) {
      item = { finding: -1, field: '(request)', kind: 'request', score: screening.score, action: screening.action };
    } else if (sample) {
      item = { finding: -1, field: '(request)', kind: 'audit-sample', score: sample.score, action: 'allow' };
    } else {
      throw new CountersignError('VALIDATION_FAILED', `request ${request.id} has no screening findings and is not in the audit sample: there is nothing to judge`);
    }
    const at = this.deps.now();
    const row: ScreenVerdictRow = {
      id: newId('sv', at),
      request_id: request.id,
      finding: item.finding,
      field: item.field,
      kind: item.kind,
      channel: 'content',
      score: item.score,
      action: item.action,
      audited: sample ? 1 : 0,
      verdict: body.verdict,
      operator_id: by.operatorId,
      agent_id: request.agentId,
      created_at: at,
      mac: null,
    };
    row.mac = this.deps.secret.mac(VERDICT_MAC, verdictFields(row));
    await this.deps.store.transaction(async (tx) => {
      await tx.screening.insertVerdict(row);
      await this.deps.writer.append(tx, [
        draft('screen_verdict', request.id, actorOf(by), { verdictId: row.id, finding: body.finding ?? null, field: row.field, kind: row.kind, verdict: row.verdict, score: row.score, counted: true }, at),
      ]);
    });
    return view(row);
  }

  async verdictsFor(by: Principal, requestId: string): Promise<{ items: VerdictView[]; sampled: boolean }> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot read screening verdicts');
    const request = await this.deps.getRequest(by, requestId);
    const rows = await this.deps.store.screening.verdictsFor(request.id);
    return { items: rows.map(view), sampled: (await this.deps.store.screening.sample(request.id)) !== undefined };
  }

  /**
   * Accepted verdicts of the report window, under the guards: the row's MAC verifies (for the
   * retrain a row must have one: rows from before migration 023 do not teach), its operator
   * passes a login's checks now (not disabled, not removed, operator row's MAC) and holds a
   * verdict role now, and the per-source and per-agent caps.
   */
  private async accepted(forRetrain = false): Promise<{ rows: ScreenVerdictRow[]; accepted: ReturnType<typeof acceptVerdicts>; since: number }> {
    const since = this.deps.now() - REPORT_WINDOW_MS;
    const rows = (await this.deps.store.screening.verdictsSince(since)).filter((r) => (r.mac === null ? !forRetrain : this.deps.secret.verify(VERDICT_MAC, verdictFields(r), r.mac)));
    const operators = await this.deps.activeOperators();
    const ok = new Set(operators.filter((o) => this.authorisedRoles(o.roles)).map((o) => o.operatorId));
    const verdicts: ScreenVerdict[] = rows.map((r) => ({ itemId: `${r.request_id}#${r.finding}`, channel: r.channel as Channel, score: r.score, verdict: r.verdict as VerdictLabel, reviewer: r.operator_id, agent: r.agent_id }));
    const accepted = acceptVerdicts(verdicts, { authorised: (id) => ok.has(id), maxWeightPerSource: this.deps.policy().screening.learning.maxWeightPerSource });
    return { rows, accepted, since };
  }

  /** Rates (detection, false positives, false negatives from the audit sample) from the latest accepted verdict per reviewer and item. */
  async rates(): Promise<VerdictRates> {
    const { rows, accepted } = await this.accepted();
    return ratesOf(rows, accepted);
  }

  async report(by: Principal): Promise<LearningReport> {
    if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'agent keys cannot read the screening report');
    const policy = this.deps.policy().screening;
    const { rows, accepted, since } = await this.accepted();
    const calibration = {} as LearningReport['calibration'];
    for (const channel of ['user', 'content'] as const) {
      const bands = policy.bands[channel];
      const flagIndex = bands.findIndex((b) => b.action !== 'allow');
      const current = flagIndex >= 0 ? (bands[flagIndex]?.min ?? 1) : 1;
      const p = calibrateThreshold(accepted.accepted, { channel, targetFpr: policy.learning.targetFpr, confidence: policy.learning.confidence, current });
      calibration[channel] = { ...p, policySnippet: snippet(channel, bands, flagIndex, p.proposed) };
    }
    return {
      window: { since: new Date(since).toISOString(), verdicts: rows.length },
      guard: { verdictRoles: policy.learning.verdictRoles, maxWeightPerSource: policy.learning.maxWeightPerSource, refused: accepted.refused, sources: [...accepted.sources], agents: [...accepted.agents] },
      rates: ratesOf(rows, accepted),
      calibration,
      auditSample: { rate: policy.learning.auditRate, sampled: await this.deps.store.screening.sampleCount() },
    };
  }

  /**
   * What the retrain learns from (core verdictExamples): the accepted verdicts of the report
   * window — MAC-verified rows of active operators holding a verdict role now, per-source and
 * per-agent caps — each with the text it judged (the
   * finding's span). Verdicts on a request as a whole (audit samples) have no span: they feed the
   * rates, not the retrain, and are counted in `missing`.
   */
  async retrainExamples(): Promise<{ examples: VerdictExample[]; counted: number; missing: number }> {
    const { accepted } = await this.accepted(true);
    const read = this.deps.readRequest;
    const texts = new Map<string, string>();
    const requests = new Map<string, ApprovalRequest | undefined>();
    for (const v of [...accepted.accepted].reverse()) {
      const [requestId, findingText] = v.itemId.split('#') as [string, string];
      const finding = Number(findingText);
      if (finding < 0 || !read) continue;
      if (!requests.has(requestId)) {
        if (requests.size >= MAX_RETRAIN_REQUESTS) continue;
        requests.set(requestId, await read(requestId).catch(() => undefined));
      }
      const r = requests.get(requestId);
      const f = r?.assessment.screening?.findings[finding];
      const text = r && f ? fieldText(r, f.field)?.slice(f.span.start, f.span.end) : undefined;
      if (text !== undefined) texts.set(v.itemId, text);
    }
    const { examples, missing } = verdictExamples(accepted.accepted, (id) => texts.get(id));
    return { examples, counted: accepted.accepted.length, missing };
  }

  /**
   * Pattern suggestions for admins: word n-grams that separate confirmed attacks (the flagged
   * spans' text) from confirmed benign ones. Never enabled by anything here.
   */
  async patterns(by: Principal): Promise<{ suggestions: PatternSuggestion[]; note: string }> {
    if (by.kind !== 'operator' || !by.roles.includes('admin')) throw new CountersignError('FORBIDDEN', 'pattern suggestions are for admins');
    const { accepted } = await this.accepted();
    const attacks: { text: string; reviewer: string }[] = [];
    const benign: { text: string }[] = [];
    const requests = new Map<string, ApprovalRequest | null>();
    for (const v of accepted.accepted) {
      const [requestId, findingText] = v.itemId.split('#') as [string, string];
      const finding = Number(findingText);
      if (finding < 0) continue;
      if (!requests.has(requestId)) {
        if (requests.size >= MAX_PATTERN_REQUESTS) break;
        requests.set(requestId, await this.deps.getRequest(by, requestId).catch(() => null));
      }
      const r = requests.get(requestId);
      const f = r?.assessment.screening?.findings[finding];
      if (!r || !f) continue;
      const text = fieldText(r, f.field)?.slice(f.span.start, f.span.end);
      if (!text) continue;
      if (v.injection) attacks.push({ text, reviewer: v.reviewer });
      else benign.push({ text });
    }
    return { suggestions: suggestPatterns(attacks, benign), note: 'suggestions only: nothing is enabled; add a pattern to the policy (contentPatterns, rules) yourself if it is right' };
  }
}

function view(r: ScreenVerdictRow): VerdictView {
  return {
    id: r.id,
    requestId: r.request_id,
    finding: r.finding < 0 ? null : r.finding,
    field: r.field,
    kind: r.kind,
    score: r.score,
    action: r.action as ScreenAction,
    audited: r.audited === 1,
    verdict: r.verdict as VerdictLabel,
    operatorId: r.operator_id,
    createdAt: new Date(r.created_at).toISOString(),
  };
}

function ratesOf(rows: readonly ScreenVerdictRow[], accepted: ReturnType<typeof acceptVerdicts>): VerdictRates {
  const counted = new Set(accepted.accepted.map((v) => `${v.reviewer}\u0000${v.itemId}`));
  const latest = new Map<string, ScreenVerdictRow>();
  for (const r of rows) {
    const key = `${r.operator_id}\u0000${r.request_id}#${r.finding}`;
    if (counted.has(key)) latest.set(key, r);
  }
  return verdictRates([...latest.values()].map((r) => ({ action: r.action as ScreenAction, verdict: r.verdict as VerdictLabel, audited: r.audited === 1 })));
}

/** The `screening:` YAML that applies a proposal, when it fits between the bands around it. */
function snippet(channel: Channel, bands: Policy['screening']['bands'][Channel], flagIndex: number, proposed: number | null): string | null {
  if (proposed === null || flagIndex < 1) return null;
  const next = bands[flagIndex + 1];
  const prev = bands[flagIndex - 1];
  const t = Math.round(proposed * 10_000) / 10_000;
  if ((next && t >= next.min) || (prev && t <= prev.min)) return null;
  const lines = bands.map((b, i) => `        - { min: ${i === flagIndex ? t : b.min}, action: ${b.action}, severity: ${b.severity} }`);
  return ['screening:', '  channels:', `    ${channel}:`, '      bands:', ...lines].join('\n');
}

/** The string at a finding's field path (core fields.ts) in a request. */
export function fieldText(r: ApprovalRequest, field: string): string | undefined {
  return textAtPath({ description: r.description, args: r.args, context: r.context, alternatives: r.alternatives }, field);
}
