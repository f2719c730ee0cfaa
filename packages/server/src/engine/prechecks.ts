/**
 * Governance pre-checks in the engine (issue 18): what a create and a vote ask of the validators,
 * and the `prechecked` audit record. The decisions are core's (precheck/: applicablePrechecks,
 * precheckOutcomes, precheckEffects); the calls are the caller's (precheck/caller.ts). A create
 * calls the validators that apply to its payload before it is routed; a vote calls them again
 * only when the payload that will run is not the one judged (a modification or an alternative)
 * or a validator's configuration changed since (F1), and only after the vote's cheap checks
 * passed and the reviewer's budget allowed it (F2).
 */
import { applicablePrechecks, precheckOutcomes, type JsonObject, type PrecheckConfig, type PrecheckOutcome, type PrecheckResult, type PrecheckSubject, type RiskLevel } from '@countersign/core';
import { SYSTEM_ACTOR, type AuditDraft } from '../audit/writer.ts';
import type { Queries } from '../store/store.ts';
import { audit, type House } from './house.ts';

/** One validator as the `prechecked` entry records it: its own answer and what it came to. */
export interface PrecheckedValidator {
  name: string;
  identity: string;
  status: PrecheckResult['status'];
  outcome: 'allow' | 'deny' | 'raise';
  reasons: readonly string[];
  raiseTo: RiskLevel | null;
  error?: string;
}

export interface PrecheckedData {
  stage: 'create' | 'vote';
  payloadHash: string;
  policyVersion: number;
  effect: PrecheckOutcome['effect'];
  raiseTo: RiskLevel | null;
  validators: PrecheckedValidator[];
}

/** The `prechecked` entry's data: each validator's name, identity, status, outcome and (bounded, its own) reasons; never the body sent. */
export function precheckedData(stage: 'create' | 'vote', payloadHash: string, policyVersion: number, results: readonly PrecheckResult[], outcome: PrecheckOutcome): PrecheckedData {
  return {
    stage,
    payloadHash,
    policyVersion,
    effect: outcome.effect,
    raiseTo: outcome.raiseTo,
    validators: outcome.verdicts.map((v) => {
      const r = results.find((x) => x.name === v.name && x.identity === v.identity);
      return {
        name: v.name,
        identity: v.identity,
        status: r?.status ?? 'error',
        outcome: v.outcome,
        reasons: r?.reasons ?? [],
        raiseTo: r?.raiseTo ?? (v.outcome === 'raise' ? v.raiseTo : null),
        ...(r?.error !== undefined ? { error: r.error } : r === undefined ? { error: 'no result' } : {}),
      };
    }),
  };
}

/** The results a `prechecked` entry stored, as results again (for a vote on the same payload under the same validators). */
function resultsOf(data: PrecheckedData): PrecheckResult[] {
  return data.validators.map((v) => ({
    name: v.name,
    identity: v.identity,
    status: v.status,
    reasons: v.reasons,
    ...(v.status === 'allow' && v.outcome === 'raise' && v.raiseTo !== null ? { raiseTo: v.raiseTo } : {}),
    ...(v.error !== undefined ? { error: v.error } : {}),
  }));
}

export class Prechecks {
  constructor(private readonly h: House) {}

  /** The validators that apply to a payload at a risk level under `configs`. */
  applicable(configs: readonly PrecheckConfig[], action: string, riskLevel: RiskLevel): PrecheckConfig[] {
    return applicablePrechecks(configs, { action, riskLevel });
  }

  /** At create: call the applicable validators; their outcome and the `prechecked` entry (for the create's transaction). */
  async atCreate(configs: readonly PrecheckConfig[], subject: PrecheckSubject, agentId: string, payloadHash: string, policyVersion: number, at: number): Promise<{ outcome: PrecheckOutcome; entry: AuditDraft }> {
    this.h.precheckCaller.reserveAgent(agentId, configs.length);
    const results = await this.h.precheckCaller.run(configs, subject);
    const outcome = precheckOutcomes(results, configs, (c) => this.h.precheckCaller.identity(c));
    return { outcome, entry: audit('prechecked', subject.requestId, SYSTEM_ACTOR, precheckedData('create', payloadHash, policyVersion, results, outcome), at) };
  }

  /**
   * At a vote, after its cheap checks passed: the results to judge the payload that will run by.
   * The latest `prechecked` entry's results when it judged this very payload (same payload hash)
   * and every applicable validator has a result under its current identity; otherwise the
   * validators are called again (spending the reviewer's budget first: RATE_LIMITED when spent)
   * and a `prechecked` entry (stage vote) is written at once, whatever the vote then comes to.
   */
  async atVote(q: Queries, reviewerId: string, configs: readonly PrecheckConfig[], subject: PrecheckSubject, payloadHash: string, policyVersion: number): Promise<PrecheckResult[]> {
    const entries = (await q.auditFor(subject.requestId)).filter((e) => e.type === 'prechecked');
    const stored = entries.map((e) => JSON.parse(e.data) as PrecheckedData).filter((d) => d.payloadHash === payloadHash).at(-1);
    if (stored) {
      const results = resultsOf(stored);
      const reusable = configs.every((c) => results.some((r) => r.name === c.name && r.identity === this.h.precheckCaller.identity(c)));
      if (reusable) return results;
    }
    this.h.precheckCaller.reserve(reviewerId, configs.length);
    const results = await this.h.precheckCaller.run(configs, subject);
    const outcome = precheckOutcomes(results, configs, (c) => this.h.precheckCaller.identity(c));
    const at = this.h.now();
    await this.h.store.transaction(async (tx) => {
      await this.h.writer.append(tx, [audit('prechecked', subject.requestId, SYSTEM_ACTOR, precheckedData('vote', payloadHash, policyVersion, results, outcome), at)]);
    });
    return results;
  }
}

/** A subject from a stored request's parts. */
export function subjectOf(stage: 'create' | 'vote', requestId: string, payload: { action: string; args: JsonObject; alternative: string | null }, agent: { id: string; name: string }, risk: { level: RiskLevel; score: number }, context: Readonly<Record<string, unknown>> | undefined): PrecheckSubject {
  return { stage, requestId, action: payload.action, args: payload.args, alternative: payload.alternative, agent, risk, context };
}
