/**
 * Red-team review of governance pre-checks (issue 18), core.
 * F2: a validator's error text (the duplicate key it sent, its content type) reaches the
 * assessment's reasons uncleaned: bidi overrides and C1 controls pass into what reviewers read,
 * although reasons are documented as cleaned of them (cleanReason).
 */
import { describe, expect, it } from 'vitest';
import { precheckEffects, precheckOutcomes, readValidatorAnswer, resolvePrecheck } from '../src/index.ts';

const config = resolvePrecheck({ name: 'guardian', kind: 'http', url: 'http://127.0.0.1:1/x' });
const effectOf = (answer: { status: number; contentType: string | null; body: string; truncated: boolean }) => {
  const read = readValidatorAnswer('http', answer);
  expect(read.status).toBe('error');
  const result = { name: 'guardian', identity: 'id', status: 'error' as const, reasons: [], error: read.status === 'error' ? read.error : '' };
  return precheckEffects(precheckOutcomes([result], [config], () => 'id'))[0]!.reason;
};

describe('review: validator error text in reasons', () => {
  it('F2: a bidi override in a duplicated key does not reach the reason', () => {
    const reason = effectOf({ status: 200, contentType: 'application/json', body: '{"allow":true,"\u202egnp.exe":1,"\u202egnp.exe":2}', truncated: false });
    expect(reason).not.toMatch(/[\u202a-\u202e\u2066-\u2069]/);
  });
  it('F2: C1 controls in a content type do not reach the reason', () => {
    const reason = effectOf({ status: 200, contentType: 'text/\u009b31m\u0085plain', body: '{}', truncated: false });
    expect(reason).not.toMatch(/[\u0080-\u009f]/);
  });
});
