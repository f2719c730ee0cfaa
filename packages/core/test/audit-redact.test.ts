/** PII redaction: field names and content patterns become deterministic keyed tokens. */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRedactor, DEFAULT_REDACTED_FIELDS } from '../src/index.ts';

const tokenize = (key: string) => (kind: string, value: string) => createHmac('sha256', key).update(`${kind}\u0000${value}`).digest('hex').slice(0, 20);
const redactor = createRedactor({ tokenize: tokenize('k1') });
const TOKEN = /\[(email|ip_address|user_id|phone_number|us_ssn|credit_card|secret|data|[a-z]+):[0-9a-f]{20}\]/;

describe('redaction', () => {
  it('replaces the default fields whole, whatever their spelling, and keeps the rest', () => {
    const out = redactor.redact({ email: 'ann@example.com', ipAddress: '203.0.113.7', ip_address: '203.0.113.7', USER_ID: 42, phoneNumber: '+44 20 7946 0000', note: 'ok', nested: { user_id: 'u-1' }, list: [{ email: 'x@y.example' }], nothing: null }) as Record<string, unknown>;
    expect(out.note).toBe('ok');
    expect(out.nothing).toBeNull();
    for (const key of ['email', 'ipAddress', 'ip_address', 'USER_ID', 'phoneNumber']) expect(out[key], key).toMatch(new RegExp(`^${TOKEN.source}$`));
    expect(out.ipAddress).toBe(out.ip_address);
    expect((out.nested as Record<string, unknown>).user_id).toMatch(/^\[user_id:/);
    expect(JSON.stringify(out)).not.toMatch(/ann@example|203\.0\.113|u-1|7946|x@y/);
    expect(DEFAULT_REDACTED_FIELDS).toEqual(['email', 'ip_address', 'ipAddress', 'user_id', 'userId', 'phone_number', 'phoneNumber']);
  });

  it('finds personal data inside any string: emails, IPs, SSNs, Luhn-valid card numbers, secrets', () => {
    const reason = 'mailed bob@corp.example from 198.51.100.23 and 2001:db8::8a2e:370:7334; SSN 123-45-6789; card 4111 1111 1111 1111; key sk_live_abcdefghijklmnop; ok 4111 1111 1111 1112 at 10:30:00';
    const out = redactor.redact({ reason }) as { reason: string };
    expect(out.reason).toMatch(/^mailed \[email:[0-9a-f]{20}\] from \[ip_address:[0-9a-f]{20}\] and \[ip_address:[0-9a-f]{20}\]; SSN \[us_ssn:[0-9a-f]{20}\]; card \[credit_card:[0-9a-f]{20}\]; key \[secret:[0-9a-f]{20}\]; ok 4111 1111 1111 1112 at 10:30:00$/);
    // A text mention and a field of the same value share the token, so they can be joined.
    const both = redactor.redact({ ip_address: '198.51.100.23', text: 'seen 198.51.100.23' }) as Record<string, string>;
    expect(both.text).toBe(`seen ${both.ip_address}`);
  });

  it('is deterministic under one key and different under another', () => {
    fc.assert(
      fc.property(fc.emailAddress(), (email) => {
        const a = redactor.redact({ email }) as { email: string };
        expect(redactor.redact({ email })).toEqual(a);
        expect(a.email).toBe(redactor.token('email', email));
        const other = createRedactor({ tokenize: tokenize('k2') }).redact({ email }) as { email: string };
        expect(other.email).not.toBe(a.email);
      }),
      { numRuns: 50 },
    );
  });

  it('leaves identities and computed ids alone', () => {
    const data = { deciders: ['alice@corp.example'], name: 'bob@corp.example', agentId: 'agt_1', hash: '4111111111111111', reason: 'ask alice@corp.example' };
    const out = redactor.redact(data) as Record<string, unknown>;
    expect(out).toMatchObject({ deciders: ['alice@corp.example'], name: 'bob@corp.example', agentId: 'agt_1', hash: '4111111111111111' });
    expect(out.reason).toMatch(/^ask \[email:/);
  });

  it('takes other field names, and can leave strings alone', () => {
    const custom = createRedactor({ tokenize: tokenize('k'), fields: ['customerName'], patterns: false });
    expect(custom.redact({ customer_name: 'Ann', email: 'a@b.example', text: 'a@b.example' })).toEqual({
      customer_name: custom.token('customername', 'Ann'),
      email: 'a@b.example',
      text: 'a@b.example',
    });
  });
});
