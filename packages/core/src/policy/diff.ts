/**
 * What changes between two policies, by effective setting: both sides are resolved policies
 * (validated, merged over the defaults), so a key written out with its default value is no
 * change, and a default that a file stops overriding is one. Each change is one sentence an
 * admin reads ("critical risk needs 3 approvals instead of 2"), with its path and both values.
 *
 *   diffPolicies(active.policy, candidate.policy).map((c) => c.text)
 *
 * Everything in the resolved policy is compared; settings without a sentence of their own get a
 * generic one ("guard.slicing.holdMinutes: 60 → 30"), so no change goes unreported.
 */
import { formatDuration } from '../duration.ts';
import type { ApproverSpec } from '../schemas.ts';
import type { EscalationLevel, Policy, PolicyRule } from './types.ts';
import { levelWho } from './evaluate.ts';
import { isPlainObject } from './util.ts';

export interface PolicyChange {
  /** Where, as in the resolved policy: `levels.critical.approvals`, `rules.large-transfer`. */
  readonly path: string;
  readonly kind: 'added' | 'removed' | 'changed';
  readonly before: unknown;
  readonly after: unknown;
  /** The change in words. */
  readonly text: string;
}

const RISK = ['low', 'medium', 'high', 'critical'] as const;

export function diffPolicies(before: Policy, after: Policy): PolicyChange[] {
  const out: PolicyChange[] = [];
  const push = (path: string, kind: PolicyChange['kind'], b: unknown, a: unknown, text: string) => void out.push({ path, kind, before: b, after: a, text });
  const changed = (b: unknown, a: unknown) => canonical(b) !== canonical(a);

  // Confidence bands and risk thresholds.
  for (const band of ['full', 'supervised', 'advisory'] as const) {
    const b = before.automation[band];
    const a = after.automation[band];
    if (b !== a) push(`automation.${band}`, 'changed', b, a, `${band} automation starts at confidence ${a} instead of ${b}${band === 'advisory' ? ' (below it a request is manual)' : ''}`);
  }
  for (const level of ['medium', 'high', 'critical'] as const) {
    const b = before.riskThresholds[level];
    const a = after.riskThresholds[level];
    if (b !== a) push(`riskThresholds.${level}`, 'changed', b, a, `a risk score of ${a} or more is ${level} (was ${b})`);
  }
  for (const name of Object.keys({ ...before.riskFactors, ...after.riskFactors }) as (keyof Policy['riskFactors'])[]) {
    const b = before.riskFactors[name];
    const a = after.riskFactors[name];
    if (changed(b, a)) push(`riskFactors.${name}`, 'changed', b, a, `the ${name} factor weighs ${pct(a)} of the risk score instead of ${pct(b)}`);
  }

  // Per risk level.
  for (const level of RISK) {
    const b = before.levels[level];
    const a = after.levels[level];
    const at = `levels.${level}`;
    if (b.slaMs !== a.slaMs) push(`${at}.sla`, 'changed', b.slaMs, a.slaMs, `${level}-risk reviews are due within ${formatDuration(a.slaMs)} instead of ${formatDuration(b.slaMs)}`);
    if (b.autoApprove !== a.autoApprove) push(`${at}.autoApprove`, 'changed', b.autoApprove, a.autoApprove, a.autoApprove ? `${level}-risk requests may now be auto-approved (at full or supervised automation)` : `${level}-risk requests are no longer auto-approved: a human decides`);
    // `mfa` as written: true, false or webauthn (LevelPolicy keeps `webauthn` beside the boolean).
    const bm = b.webauthn ? 'webauthn' : b.mfa;
    const am = a.webauthn ? 'webauthn' : a.mfa;
    if (bm !== am) {
      const text =
        am === 'webauthn'
          ? `approving a ${level}-risk request now needs a passkey or security key (WebAuthn, in the dashboard); TOTP codes are refused`
          : am
            ? bm === 'webauthn'
              ? `approving a ${level}-risk request accepts a TOTP code again, not only a passkey (WebAuthn)`
              : `approving a ${level}-risk request now needs step-up MFA`
            : `approving a ${level}-risk request no longer needs step-up MFA`;
      push(`${at}.mfa`, 'changed', bm, am, text);
    }
    if (b.approvals !== a.approvals) push(`${at}.approvals`, 'changed', b.approvals, a.approvals, `${level}-risk reviews need ${a.approvals} approval(s) instead of ${b.approvals}`);
    if (changed(b.approvers, a.approvers)) push(`${at}.approvers`, 'changed', b.approvers ?? null, a.approvers ?? null, `${level}-risk reviews are approved by ${approversText(a.approvers)} instead of ${approversText(b.approvers)}`);
    if ((b.deny ?? 1) !== (a.deny ?? 1)) push(`${at}.deny`, 'changed', b.deny ?? 1, a.deny ?? 1, `${a.deny ?? 1} rejection(s) decide a ${level}-risk review instead of ${b.deny ?? 1}`);
    if (Boolean(b.modifiedNeedsSecondReviewer) !== Boolean(a.modifiedNeedsSecondReviewer)) push(`${at}.modifiedNeedsSecondReviewer`, 'changed', Boolean(b.modifiedNeedsSecondReviewer), Boolean(a.modifiedNeedsSecondReviewer), a.modifiedNeedsSecondReviewer ? `a modified ${level}-risk payload now needs a second reviewer` : `a modified ${level}-risk payload no longer needs a second reviewer`);
    if (b.approvalValidMs !== a.approvalValidMs) push(`${at}.approvalValidFor`, 'changed', b.approvalValidMs, a.approvalValidMs, `a ${level}-risk approval may be claimed for ${formatDuration(a.approvalValidMs)} instead of ${formatDuration(b.approvalValidMs)}`);
    if (changed(b.notify, a.notify)) push(`${at}.notify`, 'changed', b.notify, a.notify, a.notify.length ? `${level}-risk reviews also notify ${a.notify.join(', ')}` : `${level}-risk reviews notify only their escalation level's channels`);
    if ((b.startLevel ?? 1) !== (a.startLevel ?? 1)) push(`${at}.startLevel`, 'changed', b.startLevel ?? 1, a.startLevel ?? 1, `${level}-risk reviews start at escalation level ${a.startLevel ?? 1} instead of ${b.startLevel ?? 1}`);
  }

  // Actions.
  if (before.actions.defaultWeight !== after.actions.defaultWeight) {
    push('actions.defaultWeight', 'changed', before.actions.defaultWeight, after.actions.defaultWeight, `actions the policy does not describe weigh ${after.actions.defaultWeight} instead of ${before.actions.defaultWeight}`);
  }
  keyed(before.actions.byName, after.actions.byName, (name, b, a) => {
    const at = `actions.${name}`;
    if (b === undefined) push(at, 'added', null, a, `new action ${name}: ${traitsText(a!)}`);
    else if (a === undefined) push(at, 'removed', b, null, `action ${name} is no longer described (default weight ${after.actions.defaultWeight} applies; was ${traitsText(b)})`);
    else if (changed(b, a)) push(at, 'changed', b, a, `action ${name}: ${traitsText(b)} → ${traitsText(a)}`);
  });
  listDiff('requireApproval', before.requireApproval, after.requireApproval, (x) => `${x} always needs review`, (x) => `${x} no longer always needs review`, push);
  listDiff('dangerousActions', before.dangerousActions, after.dangerousActions, (x) => `${x} is now a dangerous action`, (x) => `${x} is no longer a dangerous action`, push);
  listDiff(
    'targets',
    before.targets.map((t) => `${t.match} (${t.criticality})`),
    after.targets.map((t) => `${t.match} (${t.criticality})`),
    (x) => `targets matching ${x} criticality`,
    (x) => `no longer a target: ${x}`,
    push,
  );

  // Rules, by name.
  const rulesBefore = Object.fromEntries(before.rules.map((r) => [r.name, r]));
  const rulesAfter = Object.fromEntries(after.rules.map((r) => [r.name, r]));
  keyed(rulesBefore, rulesAfter, (name, b, a) => {
    const at = `rules.${name}`;
    if (b === undefined) push(at, 'added', null, a, `new rule ${name}: ${ruleText(a!)}`);
    else if (a === undefined) push(at, 'removed', b, null, `rule ${name} is removed (was: ${ruleText(b)})`);
    else if (changed(b, a)) push(at, 'changed', b, a, `rule ${name} changes: ${ruleText(b)} → ${ruleText(a)}`);
  });

  // Escalation.
  const lb = before.escalation.levels;
  const la = after.escalation.levels;
  for (let i = 0; i < Math.max(lb.length, la.length); i++) {
    const b = lb[i];
    const a = la[i];
    const at = `escalation.levels[${i}]`;
    if (b === undefined) push(at, 'added', null, a, `new escalation level ${i + 1}: ${levelText(a!)}`);
    else if (a === undefined) push(at, 'removed', b, null, `escalation level ${i + 1} is removed (was ${levelText(b)})`);
    else if (changed(b, a)) push(at, 'changed', b, a, `escalation level ${i + 1}: ${levelText(b)} → ${levelText(a)}`);
  }
  if (before.escalation.onFinalTimeout !== after.escalation.onFinalTimeout) {
    const a = after.escalation.onFinalTimeout;
    push('escalation.onFinalTimeout', 'changed', before.escalation.onFinalTimeout, a, a === 'approve' ? 'at the end of the escalation chain an undecided request is now APPROVED (onFinalTimeout: approve)' : 'at the end of the escalation chain an undecided request is now rejected');
  }

  // Agents and channels: named entries.
  keyed(before.agents, after.agents, (name, b, a) => {
    const at = `agents.${name}`;
    if (b === undefined) push(at, 'added', null, a, `agent ${name} gets overrides: ${compact(a)}`);
    else if (a === undefined) push(at, 'removed', b, null, `agent ${name} loses its overrides (was ${compact(b)})`);
    else if (changed(b, a)) push(at, 'changed', b, a, `agent ${name}: ${compact(b)} → ${compact(a)}`);
  });
  keyed(before.channels, after.channels, (name, b, a) => {
    const type = (x: unknown) => (isPlainObject(x) && typeof x['type'] === 'string' ? x['type'] : 'channel');
    const at = `channels.${name}`;
    if (b === undefined) push(at, 'added', null, a, `new ${type(a)} channel ${name}`);
    else if (a === undefined) push(at, 'removed', b, null, `${type(b)} channel ${name} is removed`);
    else if (changed(b, a)) push(at, 'changed', b, a, `${type(a)} channel ${name} changes its settings`);
  });
  keyed(before.contentPatterns, after.contentPatterns, (name, b, a) => {
    const at = `contentPatterns.${name}`;
    if (b === undefined) push(at, 'added', null, a, `new content pattern ${name}`);
    else if (a === undefined) push(at, 'removed', b, null, `content pattern ${name} is removed`);
    else if (changed(b, a)) push(at, 'changed', b, a, `content pattern ${name} matches differently`);
  });

  // Everything else, generically.
  generic('guard', before.guard, after.guard, push);
  if (before.auditRetentionDays !== after.auditRetentionDays) {
    push('auditRetentionDays', 'changed', before.auditRetentionDays, after.auditRetentionDays, `audit entries are kept ${after.auditRetentionDays} days instead of ${before.auditRetentionDays}`);
  }
  return out;
}

type Push = (path: string, kind: PolicyChange['kind'], b: unknown, a: unknown, text: string) => void;

function keyed<T>(b: Readonly<Record<string, T>>, a: Readonly<Record<string, T>>, each: (name: string, b: T | undefined, a: T | undefined) => void): void {
  const names = [...new Set([...Object.keys(b), ...Object.keys(a)])].sort();
  for (const name of names) each(name, Object.hasOwn(b, name) ? b[name] : undefined, Object.hasOwn(a, name) ? a[name] : undefined);
}

function listDiff(path: string, b: readonly string[], a: readonly string[], added: (x: string) => string, removed: (x: string) => string, push: Push): void {
  for (const x of a) if (!b.includes(x)) push(`${path}`, 'added', null, x, added(x));
  for (const x of b) if (!a.includes(x)) push(`${path}`, 'removed', x, null, removed(x));
}

function generic(path: string, b: unknown, a: unknown, push: Push): void {
  if (isPlainObject(b) && isPlainObject(a)) {
    for (const k of [...new Set([...Object.keys(b), ...Object.keys(a)])].sort()) generic(`${path}.${k}`, b[k], a[k], push);
    return;
  }
  if (canonical(b) === canonical(a)) return;
  const kind = b === undefined ? 'added' : a === undefined ? 'removed' : 'changed';
  push(path, kind, b ?? null, a ?? null, `${path}: ${compact(b)} → ${compact(a)}`);
}

function pct(n: number): string {
  return `${Math.round(n * 1000) / 10}%`;
}

function approverText(s: ApproverSpec): string {
  if (s.operator !== undefined) return `operator ${s.operator}`;
  const who = s.role ?? 'any reviewer';
  return s.group !== undefined ? `${who} in group ${s.group}` : who;
}

function approversText(list: readonly ApproverSpec[] | undefined): string {
  return list && list.length > 0 ? list.map(approverText).join(', then ') : 'any reviewers';
}

function traitsText(t: Policy['actions']['byName'][string]): string {
  const parts = [`weight ${t.weight}`];
  if (t.reversible !== undefined) parts.push(t.reversible ? 'reversible' : 'irreversible');
  if (t.category !== undefined) parts.push(`category ${t.category}`);
  if (t.args !== undefined) parts.push(`args rules for ${Object.keys(t.args).join(', ') || 'none'}`);
  if (t.strictArgs) parts.push('strict args');
  if (t.value !== undefined) parts.push(`value at args.${t.value}`);
  return parts.join(', ');
}

function ruleText(r: PolicyRule): string {
  const w = r.when;
  const when: string[] = [];
  if (w.action) when.push(`action ${w.action.join(' or ')}`);
  if (w.actionMatches) when.push(`action contains ${w.actionMatches.join(' or ')}`);
  if (w.agent) when.push(`agent ${w.agent.join(' or ')}`);
  if (w.contentPattern) when.push(`content matches ${w.contentPattern.join(' or ')}`);
  if (w.valueAtLeast !== undefined) when.push(`value at least ${w.valueAtLeast}`);
  if (w.riskAtLeast) when.push(`risk at least ${w.riskAtLeast}`);
  if (w.confidenceBelow !== undefined) when.push(`confidence below ${w.confidenceBelow}`);
  if (w.outside) when.push(`outside ${w.outside.label}`);
  if (w.within) when.push(`within ${w.within.label}`);
  const t = r.then;
  const then: string[] = [];
  if (t.block) then.push('block');
  if (t.review) then.push('review');
  if (t.riskAtLeast) then.push(`risk at least ${t.riskAtLeast}`);
  if (t.approvers) then.push(`approved by ${approversText(t.approvers)}`);
  if (t.approvals !== undefined) then.push(`${t.approvals} approvals`);
  if (t.mfa) then.push('step-up MFA');
  if (t.startLevel !== undefined) then.push(`escalation starts at level ${t.startLevel}`);
  return `when ${when.length ? when.join(', ') : 'any request'} then ${then.join(', ') || 'nothing'}`;
}

function levelText(l: EscalationLevel): string {
  const after = l.after === 'sla' ? 'the SLA' : formatDuration(l.after);
  return `${levelWho(l)} after ${after}${l.notify.length ? `, notifying ${l.notify.join(', ')}` : ''}${l.finalAuthority ? ', with final authority (its people may decide alone)' : ''}`;
}

function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (isPlainObject(x) ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x)) ?? 'undefined';
}

function compact(v: unknown): string {
  if (v === undefined || v === null) return 'none';
  const s = typeof v === 'string' ? v : canonical(v);
  return s.length > 200 ? `${s.slice(0, 199)}…` : s;
}
