/** The dashboard's pure logic: hostile text, arg edits, queue order, routes, ATT&CK names. */
import type { ApprovalRequest } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { KNOWN_TECHNIQUES, techniqueName, techniqueReference } from '@countersign/core/attack';
import { checkArgs, diffJson } from '../src/diff.ts';
import { duration, slaLeft } from '../src/format.ts';
import { applyChange, byUrgency, isFiltered, needsConfirmation, NO_FILTER, queueParams } from '../src/queue.ts';
import { compareUrgency } from '../../core/src/queue.ts';
import { parseRoute } from '../src/router.ts';
import { hasHidden, segment, truncate, visible } from '../src/text.ts';

describe('hidden and bidi characters', () => {
  it('marks Trojan Source bidi controls, zero-width and tag characters, and keeps the rest', () => {
    const text = 'if (isAdmin) {\u202e } \u2066// check\u2069 {';
    expect(visible(text)).toBe('if (isAdmin) {⟨U+202E RLO⟩ } ⟨U+2066 LRI⟩// check⟨U+2069 PDI⟩ {');
    expect(visible('pay\u200bpal')).toBe('pay⟨U+200B ZWSP⟩pal');
    expect(visible('a\u{e0041}\u{e0042}')).toBe('a⟨U+E0041 TAG A⟩⟨U+E0042 TAG B⟩');
    expect(visible('x\u0000y\u001bz\u007f')).toBe('x⟨U+0000 NUL⟩y⟨U+001B ESC⟩z⟨U+007F DEL⟩');
    expect(visible('soft\u00adhyphen\ufeff')).toBe('soft⟨U+00AD SHY⟩hyphen⟨U+FEFF BOM⟩');
    expect(visible('line\nbreak\ttab émoji 👍🏽 العربية')).toBe('line\nbreak\ttab émoji 👍🏽 العربية');
    expect(hasHidden('plain')).toBe(false);
    expect(hasHidden('a\u200fb')).toBe(true);
    expect(hasHidden('a\u200fb')).toBe(true); // a global regex must not keep state between calls
  });

  it('segments give back the input, in order', () => {
    const text = '\u202eabc\u200b\u200bdef\u2069';
    const back = segment(text)
      .map((s) => (s.kind === 'text' ? s.text : String.fromCodePoint(s.codePoint)))
      .join('');
    expect(back).toBe(text);
    expect(segment(text).filter((s) => s.kind === 'hidden')).toHaveLength(4);
  });

  it('truncates by code points and lines, never splitting a surrogate pair', () => {
    expect(truncate('abcdef', 3)).toEqual({ shown: 'abc', hidden: 3 });
    expect(truncate('😀😀😀', 2)).toEqual({ shown: '😀😀', hidden: 1 });
    expect(truncate('a\nb\nc\nd', 100, 2)).toEqual({ shown: 'a\nb', hidden: 4 });
    expect(truncate('short', 10)).toEqual({ shown: 'short', hidden: 0 });
  });
});

describe('modifying args', () => {
  it('diffs nested objects and arrays with readable paths', () => {
    expect(diffJson({ host: 'ws-042', ports: [1, 2], opts: { a: 1 } }, { host: 'ws-043', ports: [1], opts: { a: 1, 'b c': true } })).toEqual([
      { kind: 'changed', path: 'host', before: 'ws-042', after: 'ws-043' },
      { kind: 'removed', path: 'ports[1]', before: 2 },
      { kind: 'added', path: 'opts["b c"]', after: true },
    ]);
    expect(diffJson({ a: [1] }, { a: [1] })).toEqual([]);
    expect(diffJson({ a: { b: 1 } }, { a: 'x' })).toEqual([{ kind: 'changed', path: 'a', before: { b: 1 }, after: 'x' }]);
  });

  it('validates edited JSON: an object, not too deep; shape changes are warnings', () => {
    expect(checkArgs('{"host": "ws-043"}', { host: 'ws-042' })).toEqual({ ok: true, value: { host: 'ws-043' }, warnings: [] });
    expect(checkArgs('{"host": 7, "extra": 1}', { host: 'ws-042', keep: true })).toMatchObject({
      ok: true,
      warnings: ['"host" changes type from string to number', 'removes "keep"', 'adds "extra"'],
    });
    expect(checkArgs('{"host": ', {})).toMatchObject({ ok: false, error: expect.stringMatching(/not valid JSON/) });
    expect(checkArgs('[1,2]', {})).toMatchObject({ ok: false, error: expect.stringMatching(/object/) });
    expect(checkArgs('null', {})).toMatchObject({ ok: false });
    const deep = '{"a":'.repeat(40) + '1' + '}'.repeat(40);
    expect(checkArgs(deep, {})).toMatchObject({ ok: false, error: expect.stringMatching(/deeper than 32/) });
  });
});

function req(over: { id: string; risk?: 'low' | 'medium' | 'high' | 'critical'; score?: number; due?: string | null; updatedAt?: string; status?: string; agent?: string; action?: string; createdAt?: string }): ApprovalRequest {
  return {
    id: over.id,
    agentId: 'agt_1',
    agentName: over.agent ?? 'bot',
    status: (over.status ?? 'pending') as ApprovalRequest['status'],
    action: over.action ?? 'isolate_host',
    args: {},
    description: null,
    confidence: 0.8,
    riskHint: null,
    context: {},
    alternatives: [],
    approvers: [],
    idempotencyKey: null,
    assessment: {
      riskScore: over.score ?? 0.5,
      riskLevel: over.risk ?? 'medium',
      factors: [],
      automationLevel: 'advisory',
      route: 'review',
      requiresApproval: true,
      matchedRules: [],
      approval: null,
      slaSeconds: null,
      slaDueAt: over.due === undefined ? null : over.due,
      mfaRequired: false,
      reasons: [],
    },
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: over.createdAt ?? '2025-01-01T00:00:00.000Z',
    updatedAt: over.updatedAt ?? '2025-01-01T00:00:00.000Z',
    expiresAt: null,
  };
}

describe('the queue', () => {
  it('orders as the server does: risk level first (no flood of low risk hides a critical one), then the deadline, then older', () => {
    const list = [
      req({ id: 'no-sla-critical', risk: 'critical', due: null }),
      req({ id: 'late', risk: 'low', due: '2025-01-01T00:30:00Z' }),
      req({ id: 'soon-high', risk: 'high', due: '2025-01-01T00:05:00Z' }),
      req({ id: 'soon-critical', risk: 'critical', due: '2025-01-01T00:05:00Z' }),
      req({ id: 'overdue', risk: 'low', due: '2024-12-31T23:00:00Z' }),
      req({ id: 'no-sla-low', risk: 'low', due: null }),
      req({ id: 'older-low', risk: 'low', due: null, createdAt: '2024-01-01T00:00:00.000Z' }),
    ];
    const sorted = [...list].sort(byUrgency).map((r) => r.id);
    expect(sorted).toEqual(['soon-critical', 'no-sla-critical', 'soon-high', 'overdue', 'late', 'older-low', 'no-sla-low']);
    // The same order as core's compareUrgency, which the server's SQL follows.
    const core = [...list]
      .sort((a, b) =>
        compareUrgency(
          { riskLevel: a.assessment.riskLevel, dueAt: a.assessment.slaDueAt ? Date.parse(a.assessment.slaDueAt) : null, createdAt: Date.parse(a.createdAt), id: a.id },
          { riskLevel: b.assessment.riskLevel, dueAt: b.assessment.slaDueAt ? Date.parse(b.assessment.slaDueAt) : null, createdAt: Date.parse(b.createdAt), id: b.id },
        ),
      )
      .map((r) => r.id);
    expect(sorted).toEqual(core);
  });

  it('sends every filter to the server (risk levels most urgent first, agent and action trimmed)', () => {
    expect(queueParams(NO_FILTER, 100)).toEqual({ status: 'pending', riskLevel: undefined, agentId: undefined, action: undefined, limit: 100, cursor: undefined });
    expect(isFiltered(NO_FILTER)).toBe(false);
    const q = { risks: new Set(['low', 'critical'] as const), agent: ' billing-bot ', action: 'WireTransfer', mine: false };
    expect(queueParams(q, 50, 'c')).toEqual({ status: 'pending', riskLevel: 'critical,low', agentId: 'billing-bot', action: 'WireTransfer', limit: 50, cursor: 'c' });
    expect(isFiltered({ ...NO_FILTER, agent: '  ' })).toBe(false);
    // "Only what I can approve": actionableBy=me instead of status (the server refuses both together unless pending).
    expect(queueParams({ ...q, mine: true }, 50)).toEqual({ actionableBy: 'me', riskLevel: 'critical,low', agentId: 'billing-bot', action: 'WireTransfer', limit: 50, cursor: undefined });
    expect(isFiltered({ ...NO_FILTER, mine: true })).toBe(true);
  });

  it('applies live changes to loaded rows newest-first: a stale state never overwrites a newer one; unknown ones wait for the server', () => {
    const seen = new Map<string, string>();
    const loaded = new Map([['a', { ...req({ id: 'a', updatedAt: '2025-01-01T00:00:01Z' }), actionable: false }]]);
    let q = applyChange(loaded, req({ id: 'b', updatedAt: '2025-01-01T00:00:01Z' }), seen);
    expect([...q.keys()]).toEqual(['a']); // not loaded: the next read of the page places it
    q = applyChange(q, req({ id: 'a', score: 0.6, updatedAt: '2025-01-01T00:00:02Z' }), seen);
    expect(q.get('a')?.actionable).toBe(false); // the feed carries no actionable: the row keeps its own
    q = applyChange(q, req({ id: 'a', status: 'approved', updatedAt: '2025-01-01T00:00:03Z' }), seen);
    expect(q.size).toBe(0);
    q = applyChange(new Map([['a', req({ id: 'a' })]]), req({ id: 'a', status: 'pending', updatedAt: '2025-01-01T00:00:01Z' }), seen);
    expect(q.get('a')?.updatedAt).toBe('2025-01-01T00:00:00.000Z'); // older than what was seen: ignored
  });

  it('asks for confirmation before approving high and critical risk', () => {
    expect(needsConfirmation(req({ id: 'a', risk: 'critical' }))).toBe(true);
    expect(needsConfirmation(req({ id: 'a', risk: 'high' }))).toBe(true);
    expect(needsConfirmation(req({ id: 'a', risk: 'medium' }))).toBe(false);
  });
});

describe('routes, formats, ATT&CK', () => {
  it('parses the review link shape notifications use', () => {
    const id = 'req_01j9zzzzzzzzzzzzzzzzzzzzzz';
    expect(parseRoute(`#/requests/${id}?choose=alternative%3Aquarantine`)).toEqual({ name: 'request', id, choose: 'alternative:quarantine' });
    expect(parseRoute(`#/requests/${id}`)).toEqual({ name: 'request', id, choose: null });
    expect(parseRoute('#/requests/not-an-id')).toEqual({ name: 'queue' });
    expect(parseRoute('#/metrics')).toEqual({ name: 'metrics' });
    expect(parseRoute('')).toEqual({ name: 'queue' });
  });

  it('formats SLA time left', () => {
    expect(duration(59)).toBe('59s');
    expect(duration(250)).toBe('4m 10s');
    expect(duration(-0.2)).toBe('0s');
    expect(slaLeft(10_000, 0)).toMatchObject({ text: '10s left', soon: true, overdue: false });
    expect(slaLeft(0, 125_000)).toMatchObject({ text: 'overdue by 2m 05s', overdue: true });
    expect(slaLeft(null, 0).text).toBe('no SLA');
  });

  it('names techniques from the built-in table, never from the agent', () => {
    expect(techniqueName('T1059.001')).toEqual({ name: 'PowerShell', exact: true });
    expect(techniqueName('T1059.999')).toEqual({ name: 'Command and Scripting Interpreter', exact: false });
    expect(techniqueName('T9999')).toBeNull();
    expect(techniqueName('javascript:alert(1)')).toBeNull();
    expect(techniqueReference('T1566.002')).toBe('https://attack.mitre.org/techniques/T1566/002/');
    expect(techniqueReference('"><svg>')).toBeNull();
    expect(KNOWN_TECHNIQUES).toBeGreaterThan(100);
  });
});

describe('the value lines of a card (issue 12: both sources shown when they differ)', () => {
  it('headlines what the policy counted, names both sources, and says when they differ', async () => {
    const { valueLines } = await import('../src/value.ts');
    const lines = valueLines({ amount: 500_000, args: { path: 'amount', amount: 500_000 }, context: 100 }, 100, true);
    expect(lines).toEqual([
      { label: 'Value (what the policy counted)', text: '500,000', counted: true },
      { label: 'in args.amount', text: '500,000' },
      { label: 'claimed by the agent (context.value)', text: '100' },
      { label: 'they differ', text: 'the larger counts' },
    ]);
    // The agent's small claim is never the headline.
    expect(lines.find((l) => l.counted)!.text).toBe('500,000');
    expect(valueLines({ amount: 7_900, args: { path: 'payment.total', amount: 7_900 }, context: 7_900 }, 7_900, true).map((l) => l.label)).toEqual([
      'Value (what the policy counted)',
      'in args.payment.total',
      'claimed by the agent (context.value)',
    ]);
    expect(valueLines({ amount: 50, context: 50 }, 50, true)).toHaveLength(2);
    // A claim the policy could not read is shown as a claim; no value at all shows nothing.
    expect(valueLines(undefined, 'lots', true)).toEqual([{ label: 'Value (claimed, not a number the policy read)', text: 'lots' }]);
    expect(valueLines(undefined, undefined, false)).toEqual([]);
  });
});
