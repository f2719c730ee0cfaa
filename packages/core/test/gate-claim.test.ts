/** The receipt claim contract: version 2 receipts (nonce, expiry), old receipts still verify, and who may claim when. */
import { createHash, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parsePolicy, receiptBody, receiptMessage, type Decision, type ReceiptBody } from '../src/index.ts';
import { approvalDueToLapse, approvalLapsed, claimDeadline, decideClaim, decideExecutionReport, receiptExpiry, type ClaimState } from '../src/gate/claim.ts';

const sha256 = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());
const { privateKey, publicKey } = generateKeyPairSync('ed25519');

const decision: Decision = {
  outcome: 'approved',
  decidedBy: 'reviewers',
  deciders: [{ type: 'operator', id: 'op_1', name: 'alice' }],
  reason: null,
  at: '2026-01-01T10:00:00.000Z',
  action: 'wire_transfer',
  args: { amount: 500, to: 'acme' },
  alternative: null,
  modified: false,
};

const signed = (body: ReceiptBody) => sign(null, receiptMessage(body), privateKey);
const valid = (body: ReceiptBody, sig: Buffer) => verify(null, receiptMessage(body), publicKey, sig);

describe('receipts', () => {
  it('without a claim, the body is exactly version 1 (old receipts keep verifying)', () => {
    const body = receiptBody(sha256, 'req_1', decision, 'k1');
    expect(body.version).toBe(1);
    expect(Object.keys(body).sort()).toEqual(['decidedAt', 'decidedBy', 'deciders', 'keyId', 'outcome', 'payloadHash', 'requestId', 'version']);
    // The v1 message is unchanged byte for byte.
    expect(new TextDecoder().decode(receiptMessage(body))).toBe(
      'countersign.receipt/v1\n{"decidedAt":"2026-01-01T10:00:00.000Z","decidedBy":"reviewers","deciders":[{"id":"op_1","name":"alice","type":"operator"}],"keyId":"k1","outcome":"approved","payloadHash":"' +
        body.payloadHash +
        '","requestId":"req_1","version":1}',
    );
    expect(valid(body, signed(body))).toBe(true);
  });

  it('with a claim, a runnable approval is version 2 and signs nonce and expiry', () => {
    const body = receiptBody(sha256, 'req_1', decision, 'k1', { nonce: 'n1', expiresAt: '2026-01-01T11:00:00.000Z' });
    expect(body).toMatchObject({ version: 2, nonce: 'n1', expiresAt: '2026-01-01T11:00:00.000Z' });
    const sig = signed(body);
    expect(valid(body, sig)).toBe(true);
    expect(valid({ ...body, expiresAt: '2027-01-01T11:00:00.000Z' }, sig)).toBe(false);
    expect(valid({ ...body, nonce: 'n2' }, sig)).toBe(false);
    // Downgrading to version 1 (dropping the expiry) breaks the signature.
    const { nonce: _n, expiresAt: _e, ...rest } = body;
    expect(valid({ ...rest, version: 1 }, sig)).toBe(false);
    expect(() => receiptMessage({ ...rest, version: 2 })).toThrow(/nonce and expiresAt/);
  });

  it('D5: a version 1 body carrying nonce or expiresAt is refused, never verified with those fields unsigned', () => {
    const body = receiptBody(sha256, 'req_1', decision, 'k1');
    const sig = signed(body);
    expect(() => receiptMessage({ ...body, nonce: 'n1' })).toThrow(/version 1 receipt carries nonce or expiresAt/);
    expect(() => receiptMessage({ ...body, expiresAt: '2099-01-01T00:00:00.000Z' })).toThrow(/version 1 receipt carries/);
    expect(() => receiptMessage({ ...body, nonce: 'n1', expiresAt: '2099-01-01T00:00:00.000Z' })).toThrow(/version 1 receipt carries/);
    expect(valid(body, sig)).toBe(true);
  });

  it('a rejection never carries a claim', () => {
    const body = receiptBody(sha256, 'req_1', { ...decision, outcome: 'rejected', action: null, args: null }, 'k1', { nonce: 'n', expiresAt: 'x' });
    expect(body.version).toBe(1);
    expect(body.payloadHash).toBeNull();
  });

  it('approvalValidFor per level, 1 hour by default, bounded', () => {
    const p = parsePolicy('levels:\n  critical: { sla: 5m, mfa: true, approvals: 2, approvalValidFor: 10m }\n');
    if (!p.ok) throw new Error(JSON.stringify(p.errors));
    expect(receiptExpiry('2026-01-01T10:00:00.000Z', 'critical', p.policy)).toBe('2026-01-01T10:10:00.000Z');
    expect(receiptExpiry('2026-01-01T10:00:00.000Z', 'low', p.policy)).toBe('2026-01-01T11:00:00.000Z');
    const bad = parsePolicy('levels:\n  low: { approvalValidFor: 31d }\n');
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.errors.map((e) => e.path)).toContain('levels.low.approvalValidFor');
  });
});

describe('decideClaim', () => {
  const body = receiptBody(sha256, 'req_1', decision, 'k1', { nonce: 'n1', expiresAt: '2026-01-01T11:00:00.000Z' });
  const state: ClaimState = { requestId: 'req_1', status: 'approved', nonce: 'n1', expiresAt: '2026-01-01T11:00:00.000Z', payloadHash: body.payloadHash, agentDisabled: false };
  const at = (iso: string) => new Date(iso);
  const code = (s: ClaimState, r: ReceiptBody, now = at('2026-01-01T10:30:00.000Z')) => {
    const res = decideClaim(s, r, now);
    return res.ok ? res.status : res.error.code;
  };

  it.each<[string, Partial<ClaimState>, Partial<ReceiptBody>, string, string]>([
    ['a fresh claim', {}, {}, '2026-01-01T10:30:00.000Z', 'executing'],
    ['the last millisecond', {}, {}, '2026-01-01T10:59:59.999Z', 'executing'],
    ['at the expiry', {}, {}, '2026-01-01T11:00:00.000Z', 'RECEIPT_EXPIRED'],
    ['a second claim', { status: 'executing' }, {}, '2026-01-01T10:30:00.000Z', 'ALREADY_EXECUTED'],
    ['a second claim after expiry is still named a replay', { status: 'executing' }, {}, '2026-01-01T12:00:00.000Z', 'ALREADY_EXECUTED'],
    ['a claim after the report', { status: 'executed' }, {}, '2026-01-01T10:30:00.000Z', 'ALREADY_EXECUTED'],
    ['another request', {}, { requestId: 'req_2' }, '2026-01-01T10:30:00.000Z', 'RECEIPT_MISMATCH'],
    ['another nonce (an earlier approval)', {}, { nonce: 'n0' }, '2026-01-01T10:30:00.000Z', 'RECEIPT_MISMATCH'],
    ['another payload', {}, { payloadHash: 'ab'.repeat(32) }, '2026-01-01T10:30:00.000Z', 'RECEIPT_MISMATCH'],
    ['a rejection receipt', {}, { outcome: 'rejected', payloadHash: null }, '2026-01-01T10:30:00.000Z', 'RECEIPT_MISMATCH'],
    ['pending', { status: 'pending' }, {}, '2026-01-01T10:30:00.000Z', 'ILLEGAL_TRANSITION'],
    ['a disabled agent (enabled: false)', { agentDisabled: true }, {}, '2026-01-01T10:30:00.000Z', 'AGENT_DISABLED'],
    ['a disabled agent, replaying a claimed approval, is named a replay', { agentDisabled: true, status: 'executing' }, {}, '2026-01-01T10:30:00.000Z', 'ALREADY_EXECUTED'],
    ['expired undecided', { status: 'expired' }, {}, '2026-01-01T10:30:00.000Z', 'ALREADY_DECIDED'],
    ['a stored expiry that does not parse', { expiresAt: 'soon' }, {}, '2026-01-01T10:30:00.000Z', 'RECEIPT_EXPIRED'],
    // The store is the authority: a receipt whose (signed) expiry is later does not extend it.
    ['the stored expiry wins', { expiresAt: '2026-01-01T10:10:00.000Z' }, {}, '2026-01-01T10:30:00.000Z', 'RECEIPT_EXPIRED'],
  ])('%s', (_name, s, r, now, expected) => {
    expect(code({ ...state, ...s }, { ...body, ...r }, at(now))).toBe(expected);
  });

  it('a version 1 receipt claims only an approval stored without a nonce', () => {
    const v1 = receiptBody(sha256, 'req_1', decision, 'k1');
    expect(code(state, v1)).toBe('RECEIPT_MISMATCH');
    expect(code({ ...state, nonce: null }, v1)).toBe('executing');
  });

  it('the closing report', () => {
    const r = (s: Parameters<typeof decideExecutionReport>[0], claim: boolean) => {
      const res = decideExecutionReport(s, 'succeeded', claim);
      return res.ok ? res.status : res.error.code;
    };
    expect(r('executing', true)).toBe('executed');
    expect(decideExecutionReport('executing', 'failed', true)).toEqual({ ok: true, status: 'execution_failed' });
    expect(r('approved', true)).toBe('ILLEGAL_TRANSITION');
    expect(r('approved', false)).toBe('executed');
    expect(r('executed', true)).toBe('ALREADY_EXECUTED');
    expect(r('pending', false)).toBe('ILLEGAL_TRANSITION');
    expect(r('rejected', false)).toBe('ALREADY_DECIDED');
  });
});

describe('claimDeadline: the earlier of the stored and the signed expiry (review finding 4)', () => {
  const v2 = (expiresAt: string) => ({ version: 2 as const, expiresAt });
  it('a stored expiry moved later (a database writer) does not extend a signed one', () => {
    expect(claimDeadline({ expiresAt: '2027-01-01T00:00:00.000Z' }, v2('2026-01-01T11:00:00.000Z'))).toBe(Date.parse('2026-01-01T11:00:00.000Z'));
  });
  it('a receipt cannot extend the stored expiry either', () => {
    expect(claimDeadline({ expiresAt: '2026-01-01T11:00:00.000Z' }, v2('2027-01-01T00:00:00.000Z'))).toBe(Date.parse('2026-01-01T11:00:00.000Z'));
  });
  it('version 1 has only the stored one; unreadable expiries fail closed (the epoch)', () => {
    expect(claimDeadline({ expiresAt: '2026-01-01T11:00:00.000Z' }, { version: 1 })).toBe(Date.parse('2026-01-01T11:00:00.000Z'));
    expect(claimDeadline({ expiresAt: 'soon' }, v2('2027-01-01T00:00:00.000Z'))).toBe(0);
    expect(claimDeadline({ expiresAt: '2027-01-01T00:00:00.000Z' }, v2('later'))).toBe(0);
    expect(claimDeadline({ expiresAt: '2027-01-01T00:00:00.000Z' }, { version: 2 })).toBe(0);
  });
  it('decideClaim refuses past the signed expiry even when the stored one is later', () => {
    const state: ClaimState = { requestId: 'req_1', status: 'approved', nonce: 'n1', expiresAt: '2027-01-01T00:00:00.000Z', payloadHash: 'h', agentDisabled: false };
    const receipt = { version: 2, requestId: 'req_1', outcome: 'approved', decidedBy: 'policy', deciders: [], decidedAt: '2026-01-01T10:00:00.000Z', payloadHash: 'h', keyId: 'k', nonce: 'n1', expiresAt: '2026-01-01T11:00:00.000Z' } as ReceiptBody;
    const late = decideClaim(state, receipt, new Date('2026-01-01T11:00:01.000Z'));
    expect(late.ok || late.error.code).toBe('RECEIPT_EXPIRED');
    expect(decideClaim(state, receipt, new Date('2026-01-01T10:59:00.000Z')).ok).toBe(true);
  });
});

describe('lapsed approvals (the scheduler sweep)', () => {
  const row = (status: string, claimedAt: number | null, claimExpiresAt: number | null) => ({ status, claimedAt, claimExpiresAt });

  it('approvalDueToLapse: only approved, unclaimed, with a stored expiry at or before now', () => {
    expect(approvalDueToLapse(row('approved', null, 1000), 1000)).toBe(true);
    expect(approvalDueToLapse(row('approved', null, 1000), 999)).toBe(false);
    expect(approvalDueToLapse(row('approved', 5, 1000), 2000)).toBe(false);
    expect(approvalDueToLapse(row('approved', null, null), 2000)).toBe(false);
    for (const s of ['pending', 'executing', 'executed', 'execution_failed', 'rejected', 'expired', 'cancelled', 'lapsed']) expect(approvalDueToLapse(row(s, null, 1000), 2000)).toBe(false);
  });

  it('approvalLapsed: a swept approval stays lapsed (its key re-files), before and after the sweep', () => {
    expect(approvalLapsed(row('lapsed', null, 1000), 0)).toBe(true);
    expect(approvalLapsed(row('approved', null, 1000), 1000)).toBe(true);
    expect(approvalLapsed(row('approved', null, 1000), 999)).toBe(false);
  });

  it('a claim of a lapsed request is RECEIPT_EXPIRED, even with a receipt whose dates still look valid', () => {
    const body = receiptBody(sha256, 'req_1', decision, 'k1', { nonce: 'n1', expiresAt: '2099-01-01T00:00:00.000Z' });
    const state: ClaimState = { requestId: 'req_1', status: 'lapsed', nonce: 'n1', expiresAt: '2099-01-01T00:00:00.000Z', payloadHash: body.payloadHash, agentDisabled: false };
    const r = decideClaim(state, body, new Date('2026-01-01T10:30:00.000Z'));
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.code).toBe('RECEIPT_EXPIRED');
    expect(decideExecutionReport('lapsed', 'succeeded', true)).toMatchObject({ ok: false, error: { code: 'ALREADY_DECIDED' } });
  });
});
