/** `decisionLeafProblem`: a leaf shown for a decision must record that decision — who, why, what — not merely one of the same request. */
import { describe, expect, it } from 'vitest';
import { auditLeafJson, decisionLeafProblem, type Decision } from '../src/index.ts';

const alice = { type: 'operator' as const, id: 'op_alice', name: 'alice' };
const bob = { type: 'operator' as const, id: 'op_bob', name: 'bob' };
const decision: Decision = { outcome: 'approved', decidedBy: 'reviewers', deciders: [alice, bob], reason: 'mail from carol@example.com checked', at: '2026-01-01T00:00:00.000Z', action: 'block_ip', args: { ip: '203.0.113.9' }, alternative: null, modified: false };
const payloadHash = 'ab'.repeat(32);
const expectation = { seq: 7, requestId: 'req_1', decision, payloadHash };

function leaf(over: { seq?: number; actor?: typeof alice; data?: Record<string, unknown>; type?: string; at?: string } = {}): string {
  return auditLeafJson({
    seq: over.seq ?? 7,
    at: over.at ?? decision.at,
    type: over.type ?? 'approved',
    requestId: 'req_1',
    actor: over.actor ?? bob,
    // As the server stores it: the email in the reason is a keyed token.
    data: { decidedBy: 'reviewers', deciders: ['alice', 'bob'], reason: 'mail from [email:5f1c0e9ab2d4c781e0aa] checked', alternative: null, modified: false, payloadHash, ...over.data },
  });
}

describe('decisionLeafProblem', () => {
  it("accepts the decision's own entry, with redacted text as the server stores it", () => {
    expect(decisionLeafProblem(leaf(), expectation)).toBeNull();
    // The policy's shape: no deciders, alternative or modified fields.
    const policy: Decision = { ...decision, decidedBy: 'policy', deciders: [], reason: null };
    const policyLeaf = auditLeafJson({ seq: 7, at: decision.at, type: 'approved', requestId: 'req_1', actor: { type: 'system', id: 'system', name: 'countersign' }, data: { decidedBy: 'policy', reason: null, payloadHash } });
    expect(decisionLeafProblem(policyLeaf, { ...expectation, decision: policy })).toBeNull();
  });

  it.each([
    ['other deciders', leaf({ data: { deciders: ['mallory'] } }), /other deciders/],
    ['an actor who is not a decider', leaf({ actor: { type: 'operator', id: 'op_mallory', name: 'bob' } }), /not one of the receipt's deciders/],
    ['no deciders at all', leaf({ data: { deciders: undefined } }).replace(',"deciders":null', ''), /deciders/],
    ['another reason', leaf({ data: { reason: 'rubber-stamped' } }), /another reason/],
    ['another redaction kind in the reason', leaf({ data: { reason: 'mail from [ip_address:5f1c0e9ab2d4c781e0aa] checked' } }), /another reason/],
    ['an alternative', leaf({ data: { alternative: 'isolate_host' } }), /another alternative/],
    ['modified args', leaf({ data: { modified: true } }), /another modification/],
    ['another payload', leaf({ data: { payloadHash: 'cd'.repeat(32) } }), /another payload/],
    ['another kind of decision', leaf({ data: { decidedBy: 'policy' } }), /another kind/],
    ['another position', leaf({ seq: 8 }), /entry 8, not 7/],
    ['another outcome', leaf({ type: 'rejected' }), /rejected entry/],
    ['another time', leaf({ at: '2026-01-01T00:00:01.000Z' }), /decision time/],
  ])('refuses a leaf with %s', (_name, text, why) => {
    expect(decisionLeafProblem(text, expectation)).toMatch(why);
  });

  it('refuses a leaf whose bytes could be read two ways (not canonical: duplicate keys, spacing)', () => {
    const honest = leaf();
    expect(decisionLeafProblem(honest.replace('"seq":7', '"seq":7,"seq":7'), expectation)).toMatch(/canonical/);
    expect(decisionLeafProblem(honest.replace('{"actor"', '{ "actor"'), expectation)).toMatch(/canonical/);
    expect(decisionLeafProblem('not json', expectation)).toMatch(/not JSON/);
    expect(decisionLeafProblem('[1]', expectation)).toMatch(/object/);
  });
});
