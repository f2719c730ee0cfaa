import { describe, expect, it } from 'vitest';
import { clip, renderNotification } from '../src/escalation/index.ts';
import { defaultPolicy, EMPTY_HISTORY, evaluate } from '../src/policy/index.ts';
import { CreateRequestBody, type ApprovalRequest } from '../src/schemas.ts';

const NOW = Date.parse('2026-11-21T10:00:00Z');

function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const body = CreateRequestBody.parse({
    action: 'isolate_host',
    args: { host: 'ws-042' },
    confidence: 0.82,
    description: 'EDR saw beaconing <script>alert(1)</script>',
    context: {
      target: { name: 'ws-042', type: 'host', criticality: 'high' },
      blastRadius: { scope: 'host', count: 1 },
      attack: ['T1071.001', 'T1059'],
      evidence: ['a'.repeat(1000), { type: 'edr', summary: 'beacon every 60s', source: 'crowdstrike' }, 'three', 'four'],
    },
    alternatives: [{ name: 'quarantine', action: 'quarantine_file', args: { path: '/tmp/x' }, description: 'less drastic' }],
  });
  const assessment = evaluate({ ...body, agent: 'soc-bot' }, defaultPolicy(), EMPTY_HISTORY, new Date(NOW));
  return {
    id: 'req_01jabcdefghjkmnpqrstvwxyz0',
    agentId: 'agt_1',
    agentName: 'soc-bot',
    status: 'pending',
    action: body.action,
    args: body.args,
    description: body.description ?? null,
    confidence: body.confidence ?? null,
    riskHint: null,
    context: body.context ?? {},
    alternatives: body.alternatives ?? [],
    approvers: [],
    idempotencyKey: null,
    assessment,
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: new Date(NOW).toISOString(),
    updatedAt: new Date(NOW).toISOString(),
    expiresAt: null,
    escalation: { level: 2, levels: 3, role: 'manager', operators: [], groups: [], finalAuthority: false, dueAt: new Date(NOW + 90_000).toISOString(), extended: false, assignee: null, onFinalTimeout: 'reject' },
    ...over,
  };
}

describe('renderNotification: one model for every channel', () => {
  it('carries what a reviewer needs, with agent text collected, shortened and separated', () => {
    const n = renderNotification(request(), 'escalated', { reviewBase: 'https://cs.example.com/', now: NOW });
    expect(n.title).toBe('Escalated: approval overdue: isolate_host (high risk)');
    expect(renderNotification(request(), 'escalated', { reviewBase: 'https://cs.example.com/', now: NOW, manual: true }).title).toBe('Escalated by a reviewer: approval needed: isolate_host (high risk)');
    expect(renderNotification(request(), 'requested', { reviewBase: 'https://cs.example.com/', now: NOW, manual: true }).title).toBe('Approval needed: isolate_host (high risk)');
    expect(n).toMatchObject({ agent: 'soc-bot', confidence: 0.82, attack: ['T1071.001', 'T1059'], risk: { level: 'high' } });
    expect(n.sla).toEqual({ level: 2, levels: 3, role: 'manager', dueAt: new Date(NOW + 90_000).toISOString(), secondsLeft: 90 });
    expect(n.agentSupplied.description).toContain('<script>'); // kept verbatim here; each channel escapes it
    expect(n.agentSupplied.target).toBe('ws-042 (host) criticality high');
    expect(n.agentSupplied.blastRadius).toBe('host, 1 affected');
    expect(n.agentSupplied.evidence).toHaveLength(4);
    expect([...n.agentSupplied.evidence[0]!].length).toBe(300);
    expect(n.agentSupplied.evidence[1]).toBe('[edr] beacon every 60s (source: crowdstrike)');
    expect(n.agentSupplied.evidence[3]).toBe('… and 1 more');
  });

  it('offers approve, each alternative and reject as links to the review page, never a decision URL', () => {
    const n = renderNotification(request(), 'requested', { reviewBase: 'https://cs.example.com', now: NOW });
    expect(n.reviewUrl).toBe('https://cs.example.com/#/requests/req_01jabcdefghjkmnpqrstvwxyz0');
    expect(n.actions.map((a) => a.id)).toEqual(['approve', 'alternative:quarantine', 'reject']);
    for (const a of n.actions) expect(a.url.startsWith(`${n.reviewUrl}?choose=`)).toBe(true);
    expect(n.actions[1]).toMatchObject({ label: 'Approve alternative', alternative: 'quarantine' });
  });

  it('a decided request has no actions and says who decided', () => {
    const decided = request({
      status: 'expired',
      decision: { outcome: 'expired', decidedBy: 'timeout', deciders: [], reason: 'no decision', at: new Date(NOW).toISOString(), action: null, args: null, alternative: null, modified: false },
    });
    const n = renderNotification(decided, 'decided', { reviewBase: 'https://cs', now: NOW });
    expect(n.actions).toEqual([]);
    expect(n.title).toBe('Decided (expired): isolate_host (high risk)');
    expect(n.decision).toMatchObject({ outcome: 'expired', by: 'timeout', reasonFromAgent: false });
  });

  it('clip counts code points and marks the cut', () => {
    expect(clip('😀😀😀', 2)).toBe('😀…');
    expect(clip('abc', 3)).toBe('abc');
  });
});
