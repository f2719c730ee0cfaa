/** What-if replay (core): re-evaluating stored inputs, and the comparison report over them. */
import { describe, expect, it } from 'vitest';
import {
  ReplayAccumulator,
  assessRisk,
  defaultPolicy,
  diffPolicies,
  evaluate,
  historyFromAssessment,
  parsePolicy,
  replayRequest,
  type CreateRequest,
  type HistoryStats,
  type Policy,
  type StoredRequestInput,
} from '../src/index.ts';

const T0 = Date.UTC(2026, 10, 20, 10);

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

/** A request as the create path would have stored it under `judging`. */
function stored(id: string, body: CreateRequest, judging: Policy, at = T0, history?: HistoryStats, forcedReview?: { rule: string; reason: string }): StoredRequestInput {
  const assessment = evaluate({ ...body, agent: 'bot', forcedReview }, judging, history ?? { total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 }, new Date(at));
  return {
    id,
    agent: 'bot',
    action: body.action,
    args: body.args,
    description: body.description,
    confidence: body.confidence,
    riskHint: body.riskLevel,
    context: body.context,
    approvers: body.approvers,
    timeoutSeconds: body.timeoutSeconds,
    createdAt: at,
    assessment,
  };
}

const HISTORY: HistoryStats = { total: 14, approved: 9, rejected: 3, succeeded: 1, failed: 1 };

const history = [
  { id: 'req_alert', body: { action: 'send_alert', args: { to: 'soc' }, confidence: 0.99 } },
  { id: 'req_block', body: { action: 'block_ip', args: { ip: '203.0.113.9' }, confidence: 0.97 } },
  { id: 'req_block2', body: { action: 'block_ip', args: { ip: '203.0.113.10' }, confidence: 0.97 } },
  { id: 'req_isolate', body: { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.9 } },
  { id: 'req_wire', body: { action: 'wire_transfer', args: { amount: 20000, to: 'acme' }, confidence: 0.9 } },
  { id: 'req_delete', body: { action: 'delete_data', args: { path: '/important/x' }, confidence: 0.5, riskLevel: 'critical' } },
  { id: 'req_code', body: { action: 'execute_code', args: { code: 'ls' }, confidence: 0.9 } },
] satisfies { id: string; body: CreateRequest }[];

const STRICTER = `
levels:
  medium: { autoApprove: false }
  high: { mfa: true }
  critical: { approvals: 3 }
rules:
  - name: no-code
    when: { action: execute_code }
    then: { block: true }
actions:
  send_alert: { weight: 0.1, category: notification, args: { channel: { type: string, required: true } } }
`;

function replayAll(candidate: Policy, judging: Policy = defaultPolicy()) {
  const acc = new ReplayAccumulator({ from: T0 - 86_400_000, to: T0 + 86_400_000 });
  for (const r of history) {
    const s = stored(r.id, r.body, judging);
    acc.add(s, replayRequest(s, candidate), replayRequest(s, judging));
  }
  return acc.report({ limit: 1000, limitReached: false });
}

describe('replayRequest', () => {
  it('reads back the history counts the score was computed with', () => {
    for (const h of [HISTORY, { total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 }, { total: 200, approved: 150, rejected: 50, succeeded: 120, failed: 30 }]) {
      const risk = assessRisk({ action: 'block_ip', args: {} }, defaultPolicy(), h);
      const back = historyFromAssessment(risk);
      expect(back).toBeDefined();
      // The four counts the score reads; an empty history reads as the empty history.
      expect([back!.approved, back!.rejected, back!.succeeded, back!.failed]).toEqual([h.approved, h.rejected, h.succeeded, h.failed]);
      expect(assessRisk({ action: 'block_ip', args: {} }, defaultPolicy(), back!)).toEqual(risk);
    }
    expect(historyFromAssessment({ factors: [{ name: 'history', value: 0.5, weight: 0.05, contribution: 0.025, detail: 'tampered' }] })).toBeUndefined();
  });

  it('under the policy that judged it, reproduces the stored assessment exactly (history and server holds included)', () => {
    const p = defaultPolicy();
    const hold = { rule: 'slicing-alert:value_aggregation', reason: 'slicing detected' };
    for (const r of history) {
      const s = stored(r.id, r.body, p, T0, HISTORY, r.id === 'req_block' ? hold : undefined);
      const again = replayRequest(s, p);
      expect(again.refused).toBe(false);
      if (!again.refused) expect(again.assessment).toEqual(s.assessment);
      expect(again.exactHistory).toBe(true);
      expect(again.keptHold).toBe(r.id === 'req_block' ? hold.rule : null);
    }
  });

  it('a candidate whose argument rules refuse the args reports the refusal', () => {
    const s = stored('req_alert', history[0]!.body, defaultPolicy());
    const out = replayRequest(s, policy(STRICTER));
    expect(out.refused).toBe(true);
    if (out.refused) expect(out.errors.join(' ')).toContain('channel');
  });
});

describe('ReplayAccumulator', () => {
  it('the same policy changes nothing, and every request reproduces', () => {
    const r = replayAll(defaultPolicy());
    expect(r.replayed).toBe(history.length);
    expect(r.changed).toBe(0);
    expect(r.routes.changes).toEqual([]);
    expect(r.routes.before).toEqual({ auto_approve: r.routes.after.auto_approve, review: r.routes.after.review, block: r.routes.after.block });
    expect(r.reproduced).toMatchObject({ checked: history.length, differed: 0, unchecked: 0 });
  });

  it('a stricter candidate: counts, transitions and examples name the requests', () => {
    const r = replayAll(policy(STRICTER));
    // Before: alert and both block_ip auto-approved; isolate, wire, delete, code reviewed.
    expect(r.routes.before).toEqual({ auto_approve: 3, review: 4, block: 0 });
    // After: the alert is refused (args), block_ip (medium) goes to review, execute_code is blocked.
    expect(r.routes.after).toEqual({ auto_approve: 0, review: 5, block: 1, refused: 1 });
    const byPair = Object.fromEntries(r.routes.changes.map((c) => [`${c.from}>${c.to}`, c]));
    expect(byPair['auto_approve>review']!.count).toBe(2);
    expect(byPair['auto_approve>review']!.examples.map((e) => e.id).sort()).toEqual(['req_block', 'req_block2']);
    expect(byPair['auto_approve>refused']!.examples[0]).toMatchObject({ id: 'req_alert', action: 'send_alert', agent: 'bot', from: 'auto_approve', to: 'refused' });
    expect(byPair['review>block']!.examples.map((e) => e.id)).toEqual(['req_code']);
    // Critical needs 3 approvals instead of 2; high now needs step-up.
    const approvers = r.approvers.changes.find((c) => c.examples.some((e) => e.id === 'req_delete'));
    expect(approvers).toMatchObject({ from: '2 reviewers', to: '3 reviewers' });
    const stepUp = r.stepUp.changes.find((c) => c.from === 'no step-up' && c.to === 'step-up');
    expect(stepUp!.examples.map((e) => e.id).sort()).toEqual(['req_isolate', 'req_wire']);
    // Review load: 4 → 5 reviews; approvals 1+1+2+1 = 5 → block_ip 1+1, isolate 1, wire 1, delete 3 = 7.
    expect(r.reviewLoad.before).toMatchObject({ reviews: 4, approvals: 5, stepUp: 1 });
    expect(r.reviewLoad.after).toMatchObject({ reviews: 5, approvals: 7, stepUp: 3 });
    expect(r.reviewLoad.after.reviewsPerDay).toBe(2.5);
    expect(r.rules).toContainEqual({ name: 'no-code', before: 0, after: 1 });
    expect(r.changed).toBe(7 - 0 - 0); // every request changes in some way
    expect(r.caveats.length).toBeGreaterThanOrEqual(3);
  });

  it('a looser candidate moves reviews to auto-approval', () => {
    const looser = policy(`
automation: { full: 0.85, supervised: 0.7, advisory: 0.5 }
riskThresholds: { medium: 0.25, high: 0.6, critical: 0.85 }
`);
    const r = replayAll(looser);
    const toAuto = r.routes.changes.find((c) => c.from === 'review' && c.to === 'auto_approve');
    expect(toAuto!.examples.map((e) => e.id)).toContain('req_isolate');
    expect(r.riskLevels.changes.find((c) => c.from === 'high' && c.to === 'medium')!.count).toBeGreaterThanOrEqual(1);
    expect(r.reviewLoad.after.reviews).toBeLessThan(r.reviewLoad.before.reviews);
  });

  it('memory is bounded: distinct changes fold into (other), examples stop at three', () => {
    const acc = new ReplayAccumulator({ from: T0, to: T0 + 1000 });
    const base = stored('req_x', { action: 'isolate_host', args: { host: 'ws-1' }, confidence: 0.9 }, defaultPolicy());
    for (let i = 0; i < 500; i++) {
      const s = { ...base, id: `req_${i}`, assessment: { ...base.assessment, approval: { stages: [{ count: 1, label: `operator op${i}` }], deny: 1 } } };
      acc.add(s, replayRequest(s, defaultPolicy()), undefined);
    }
    const r = acc.report({ limit: 500, limitReached: true });
    expect(r.approvers.changes.length).toBeLessThanOrEqual(51);
    expect(r.approvers.changes.reduce((n, c) => n + c.count, 0)).toBe(500);
    expect(Math.max(...r.approvers.changes.map((c) => c.examples.length))).toBeLessThanOrEqual(3);
    expect(r.reproduced.unchecked).toBe(500);
    expect(r.caveats.join(' ')).toContain('limit of 500');
  });
});

describe('diffPolicies', () => {
  it('writing out a default is no change; a real change is said in words', () => {
    expect(diffPolicies(defaultPolicy(), policy('levels:\n  critical: { sla: 5m, approvals: 2, mfa: true }\n'))).toEqual([]);
    const changes = diffPolicies(defaultPolicy(), policy(STRICTER + 'escalation:\n  onFinalTimeout: approve\n'));
    const texts = changes.map((c) => c.text);
    expect(texts).toContain('critical-risk reviews need 3 approval(s) instead of 2');
    expect(texts).toContain('medium-risk requests are no longer auto-approved: a human decides');
    expect(texts).toContain('approving a high-risk request now needs step-up MFA');
    expect(texts.some((t) => t.startsWith('new rule no-code: when action execute_code then block'))).toBe(true);
    expect(texts.some((t) => t.includes('now APPROVED'))).toBe(true);
    expect(changes.find((c) => c.path === 'actions.send_alert')?.kind).toBe('changed');
  });

  it('a default rule disabled, an escalation level removed, a guard setting changed', () => {
    const p = policy(`
rules:
  - name: large-value
    enabled: false
escalation:
  levels:
    - { role: lead, after: sla }
guard:
  velocity: { perHour: 5 }
`);
    const changes = diffPolicies(defaultPolicy(), p);
    expect(changes.map((c) => c.path)).toEqual(expect.arrayContaining(['rules.large-value', 'escalation.levels[1]', 'escalation.levels[2]', 'guard.velocity.perHour']));
    expect(changes.find((c) => c.path === 'rules.large-value')).toMatchObject({ kind: 'removed' });
    expect(changes.find((c) => c.path === 'guard.velocity.perHour')).toMatchObject({ before: 10, after: 5 });
    // And back again: every change reverses.
    expect(diffPolicies(p, defaultPolicy()).length).toBe(changes.length);
  });
});
