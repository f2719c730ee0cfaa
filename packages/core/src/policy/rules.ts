/**
 * The rule engine. Rules are evaluated in order and every match is reported by name with the
 * conditions that made it match, so a reviewer can see why a request is in front of them and
 * an admin can see which rule to tune.
 *
 * Rules only tighten: effects add review, blocks, approvers, MFA, or raise the risk level.
 * `riskAtLeast` in `then` raises the running level, and later rules' `when.riskAtLeast` see
 * the raised level — that is the one place where order matters.
 *
 * Besides the policy's `rules`, the engine applies implicit rules built from convenience keys,
 * under fixed names: `require-approval` and `dangerous-action` (policy root, before the
 * policy's rules) and `agent-block`, `agent-require-approval`, `agent-min-confidence` (from
 * `agents.<name>`, after them).
 *
 * Action names are compared in their normal form (names.ts: case-folded, `-` and camelCase
 * humps as `_`), so `when.action: wire_transfer` matches `wireTransfer` and `WIRE-TRANSFER`.
 * `actionMatches` keywords match whole segments of the action name, which is split on
 * `_ . : -` and camelCase humps, case-insensitively: `delete` matches `delete_data`,
 * `bulk_delete` and `bulkDelete`, but not `undelete` (undoing a deletion is not destructive)
 * nor `deleted_items_report`. A multi-segment keyword (`drop_table`) matches consecutive
 * segments.
 */
import type { ApproverSpec, CreateRequest, MatchedRule, RiskLevel } from '../schemas.ts';
import type { ContentMatch } from './patterns.ts';
import { normalizeActionName } from './names.ts';
import { inWindow } from './timewindow.ts';
import { valueText, type RequestValue } from './value.ts';
import type { Policy, PolicyRule, RuleConditions, TimeWindow } from './types.ts';
import { levelRank, listText, own, round } from './util.ts';

/** Names the engine gives its implicit rules; policy rules may not use them. */
export const IMPLICIT_RULE_NAMES: readonly string[] = Object.freeze([
  'require-approval',
  'dangerous-action',
  'agent-block',
  'agent-require-approval',
  'agent-min-confidence',
  'content-scan-limit',
  'value-unreadable',
]);

/** The segments of an action name: its normal form (names.ts) split on `_ . :`. Linear time. */
export function actionSegments(name: string): string[] {
  return normalizeActionName(name).split(/[_.:]+/).filter(Boolean);
}

export function actionMatchesKeyword(action: string, keyword: string): boolean {
  const hay = actionSegments(action);
  const needle = actionSegments(keyword);
  if (needle.length === 0) return false;
  for (let i = 0; i + needle.length <= hay.length; i++) {
    if (needle.every((seg, j) => hay[i + j] === seg)) return true;
  }
  return false;
}

export interface RuleInput {
  readonly request: Pick<CreateRequest, 'action' | 'confidence' | 'context'>;
  readonly agent: string;
  /** Confidence as used for decisions (unstated → 0.5). */
  readonly confidence: number;
  readonly level: RiskLevel;
  readonly content: readonly ContentMatch[];
  readonly now: Date;
  /** The request's value as the policy reads it (value.ts); absent: the agent's `context.value`. */
  readonly value?: RequestValue | undefined;
}

export interface RulesOutcome {
  readonly matched: MatchedRule[];
  /** Names of matched rules that demand human review, and that block. */
  readonly reviewBy: string[];
  readonly blockedBy: string[];
  readonly mfa: boolean;
  /** Approvers demanded by rules, in sequence, each distinct approver once. */
  readonly approvers: ApproverSpec[];
  readonly approvals: number | undefined;
  readonly startLevel: number | undefined;
  /** The risk level after `riskAtLeast` effects. */
  readonly level: RiskLevel;
  readonly reasons: string[];
}

export function approverKey(a: ApproverSpec): string {
  return JSON.stringify([a.role ?? null, a.group ?? null, a.operator ?? null]);
}

export function approverText(a: ApproverSpec): string {
  const parts = [a.role, a.group ? `group ${a.group}` : undefined, a.operator ? `operator ${a.operator}` : undefined];
  return parts.filter(Boolean).join(' in ');
}

const num = (n: number): string => String(round(n, 3));

function windowText(w: TimeWindow, now: Date, want: 'inside' | 'outside'): string | null {
  const { inside, local } = inWindow(w, now);
  if ((want === 'inside') !== inside) return null;
  return `${local.text} ${w.timeZone} is ${want === 'inside' ? 'within' : 'outside'} ${w.label}`;
}

/** Why each condition holds, or null as soon as one does not. An empty `when` matches all. */
function conditionsHold(when: RuleConditions, input: RuleInput, level: RiskLevel): string[] | null {
  const why: string[] = [];
  const { request } = input;
  if (when.action) {
    // Both sides in normal form: `wireTransfer` is `wire_transfer` (names.ts).
    const action = normalizeActionName(request.action);
    if (!when.action.some((a) => normalizeActionName(a) === action)) return null;
    why.push(`action is ${request.action}`);
  }
  if (when.actionMatches) {
    const kw = when.actionMatches.find((k) => actionMatchesKeyword(request.action, k));
    if (kw === undefined) return null;
    why.push(`action ${request.action} contains "${kw}"`);
  }
  if (when.agent) {
    if (!when.agent.includes(input.agent)) return null;
    why.push(`agent is ${input.agent}`);
  }
  if (when.contentPattern) {
    const names = when.contentPattern;
    const hits = input.content.filter((m) => names.includes(m.pattern));
    if (hits.length === 0) return null;
    const byPattern = new Map<string, string[]>();
    for (const h of hits) byPattern.set(h.pattern, [...(byPattern.get(h.pattern) ?? []), h.path]);
    for (const [p, paths] of byPattern) {
      const shown = paths.slice(0, 3).join(', ') + (paths.length > 3 ? ` and ${paths.length - 3} more` : '');
      why.push(`${p} found in ${shown}`);
    }
  }
  if (when.valueAtLeast !== undefined && input.value?.unreadable !== undefined) {
    // Fail closed (D2): an unreadable value may be any size, so every value rule whose other
    // conditions hold applies, with its quorum, stages and MFA, not only a forced review.
    why.push(`value unreadable (${input.value.unreadable.reason}): treated as ≥ ${when.valueAtLeast}`);
  } else if (when.valueAtLeast !== undefined) {
    const v = input.value !== undefined ? input.value.amount : request.context?.value;
    if (v === undefined || v < when.valueAtLeast) return null;
    why.push(`value ${input.value !== undefined ? valueText(input.value) : v} ≥ ${when.valueAtLeast}`);
  }
  if (when.riskAtLeast !== undefined) {
    if (levelRank(level) < levelRank(when.riskAtLeast)) return null;
    why.push(`risk ${level} ≥ ${when.riskAtLeast}`);
  }
  if (when.confidenceBelow !== undefined) {
    if (!(input.confidence < when.confidenceBelow)) return null;
    const stated = request.confidence === undefined ? ' (not stated)' : '';
    why.push(`confidence ${num(input.confidence)}${stated} < ${num(when.confidenceBelow)}`);
  }
  if (when.outside) {
    const t = windowText(when.outside, input.now, 'outside');
    if (t === null) return null;
    why.push(t);
  }
  if (when.within) {
    const t = windowText(when.within, input.now, 'inside');
    if (t === null) return null;
    why.push(t);
  }
  return why.length > 0 ? why : ['matches every request'];
}

function effectTexts(rule: PolicyRule): string[] {
  const t = rule.then;
  const out: string[] = [];
  if (t.block) out.push('block');
  if (t.review) out.push('review');
  if (t.riskAtLeast) out.push(`riskAtLeast ${t.riskAtLeast}`);
  if (t.approvers) out.push(`approvers ${t.approvers.map(approverText).join(' → ')}`);
  if (t.approvals !== undefined) out.push(`approvals ${t.approvals}`);
  if (t.mfa) out.push('mfa');
  if (t.startLevel !== undefined) out.push(`startLevel ${t.startLevel}`);
  return out;
}

/** The policy's rules with the implicit ones from convenience keys, in evaluation order. */
export function effectiveRules(policy: Policy, agent: string): PolicyRule[] {
  const rules: PolicyRule[] = [];
  if (policy.requireApproval.length > 0) {
    rules.push({ name: 'require-approval', description: 'the policy requires approval for this action', when: { action: policy.requireApproval }, then: { review: true } });
  }
  if (policy.dangerousActions.length > 0) {
    rules.push({ name: 'dangerous-action', description: 'dangerous action', when: { actionMatches: policy.dangerousActions }, then: { review: true } });
  }
  rules.push(...policy.rules);
  const a = own(policy.agents, agent);
  if (a) {
    if (a.block.length > 0) {
      rules.push({ name: 'agent-block', description: `agent ${agent} may not run this action`, when: { action: a.block }, then: { block: true } });
    }
    if (a.requireApproval.length > 0) {
      rules.push({ name: 'agent-require-approval', description: `agent ${agent} needs approval for this action`, when: { action: a.requireApproval }, then: { review: true } });
    }
    if (a.minConfidence !== undefined) {
      rules.push({ name: 'agent-min-confidence', description: `agent ${agent} needs confidence ${a.minConfidence} to act alone`, when: { confidenceBelow: a.minConfidence }, then: { review: true } });
    }
  }
  return rules;
}

/** Content patterns the rules for this agent refer to: only those are scanned for. */
export function patternsInUse(rules: readonly PolicyRule[]): string[] {
  return [...new Set(rules.flatMap((r) => r.when.contentPattern ?? []))];
}

export function applyRules(input: RuleInput, policy: Policy, rules: readonly PolicyRule[] = effectiveRules(policy, input.agent)): RulesOutcome {
  const matched: MatchedRule[] = [];
  const reasons: string[] = [];
  const approvers: ApproverSpec[] = [];
  const seenApprovers = new Set<string>();
  let level = input.level;
  const reviewBy: string[] = [];
  const blockedBy: string[] = [];
  let mfa = false;
  let approvals: number | undefined;
  let startLevel: number | undefined;

  for (const rule of rules) {
    const why = conditionsHold(rule.when, input, level);
    if (why === null) continue;
    const t = rule.then;
    const conds = listText(why);
    matched.push({ name: rule.name, reason: rule.description ? `${rule.description}: ${conds}` : conds, effects: effectTexts(rule) });
    if (t.block) blockedBy.push(rule.name);
    // Every effect except riskAtLeast is a requirement on human review, so it implies review.
    if (t.review || t.approvers || t.approvals !== undefined || t.mfa || t.startLevel !== undefined) reviewBy.push(rule.name);
    if (t.mfa) mfa = true;
    if (t.approvals !== undefined) approvals = Math.max(approvals ?? 0, t.approvals);
    if (t.startLevel !== undefined) startLevel = Math.max(startLevel ?? 0, t.startLevel);
    for (const a of t.approvers ?? []) {
      const k = approverKey(a);
      if (!seenApprovers.has(k)) {
        seenApprovers.add(k);
        approvers.push(a);
      }
    }
    if (t.riskAtLeast && levelRank(t.riskAtLeast) > levelRank(level)) {
      reasons.push(`Rule ${rule.name} raised the risk from ${level} to ${t.riskAtLeast}.`);
      level = t.riskAtLeast;
    }
  }
  return { matched, reviewBy, blockedBy, mfa, approvers, approvals, startLevel, level, reasons };
}
