import { describe, expect, it } from 'vitest';
import { defaultPolicy, parsePolicy, scanContent, SCAN_LIMIT_CHARS } from '../src/policy/index.ts';
import { luhnValid, scanContentBounded } from '../src/policy/patterns.ts';

const policy = defaultPolicy();
const found = (pattern: string, text: string): boolean => scanContent({ args: { text } }, [pattern], policy).length > 0;

describe('credit_card', () => {
  it('uses a real Luhn check', () => {
    expect(luhnValid('4111111111111111')).toBe(true);
    expect(luhnValid('4111111111111112')).toBe(false);
    expect(luhnValid('79927398713')).toBe(true);
  });

  it.each([
    '4111 1111 1111 1111',
    '4111-1111-1111-1111',
    '4111111111111111',
    'card:5555555555554444.',
    'amex 378282246310005',
  ])('matches %s', (text) => {
    expect(found('credit_card', text)).toBe(true);
  });

  it.each([
    '4111 1111 1111 1112', // fails Luhn
    '4532015112830367', // random 16 digits failing Luhn
    '0000 0000 0000 0000', // passes Luhn, not a card
    '1234567812345670', // passes Luhn, no issuer prefix
    'order 20240710123456789012', // 22 digits
    '4111 1111', // too short
  ])('does not match %s', (text) => {
    expect(found('credit_card', text)).toBe(false);
  });

  it('matches a card number given as a JSON number', () => {
    expect(scanContent({ args: { pan: 4111111111111111 } }, ['credit_card'], policy)).toEqual([{ pattern: 'credit_card', path: 'args.pan' }]);
  });
});

describe('us_ssn', () => {
  it('matches valid-looking SSNs with consistent separators', () => {
    expect(found('us_ssn', 'SSN 123-45-6789')).toBe(true);
    expect(found('us_ssn', 'ssn 123 45 6789')).toBe(true);
  });
  it('ignores impossible or inconsistent ones', () => {
    for (const t of ['000-12-3456', '666-12-3456', '900-12-3456', '123-00-4567', '123-45-0000', '123-45 6789', '2024-07-10', '1123-45-6789']) {
      expect(found('us_ssn', t), t).toBe(false);
    }
  });
});

describe('secret', () => {
  it.each([
    ['AWS access key id', 'key AKIAIOSFODNN7EXAMPLE here'],
    ['GitHub token', `token ghp_${'a1B2'.repeat(9)}`],
    ['Slack bot token', 'xoxb-123456789012-abcdefABCDEF'],
    ['Slack user token', 'xoxp-123456789012-abcdefABCDEF'],
    ['sk- key', `sk-${'x'.repeat(32)}`],
    ['sk-proj key', `sk-proj-${'Ab1_'.repeat(10)}`],
    ['PEM private key', '-----BEGIN RSA PRIVATE KEY-----\nMIIE...'],
    ['OpenSSH private key', '-----BEGIN OPENSSH PRIVATE KEY-----'],
    ['JWT', 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U'],
    ['password=', 'connect with password=hunter22'],
    ['db_password: ', 'DB_PASSWORD: "s3cr3t!!"'],
  ])('matches %s', (_name, text) => {
    expect(found('secret', text)).toBe(true);
  });

  it('matches a password given as a key and value', () => {
    expect(scanContent({ args: { login: { user: 'bob', password: 'hunter22' } } }, ['secret'], policy)).toEqual([
      { pattern: 'secret', path: 'args.login.password' },
    ]);
  });

  it.each(['the password policy was updated', 'sk-short', 'AKIA lowercase akiaiosfodnn7example', 'ask-me-anything', 'password=', 'reset password for bob'])(
    'does not match %s',
    (text) => {
      expect(found('secret', text)).toBe(false);
    },
  );
});

describe('email and ip_address', () => {
  it('detects emails', () => {
    expect(found('email', 'contact alice.smith+x@example.co.uk please')).toBe(true);
    expect(found('email', 'no at-sign here')).toBe(false);
  });
  it('detects IPv4 and IPv6 addresses, not versions or times', () => {
    expect(found('ip_address', 'from 203.0.113.7')).toBe(true);
    expect(found('ip_address', 'addr 2001:db8::1')).toBe(true);
    expect(found('ip_address', 'fe80:0:0:0:202:b3ff:fe1e:8329')).toBe(true);
    expect(found('ip_address', '999.1.1.1')).toBe(false);
    expect(found('ip_address', 'at 10:30:00')).toBe(false);
    expect(found('ip_address', 'v1.2.3')).toBe(false);
  });
});

describe('scanContent', () => {
  const secret = 'AKIAIOSFODNN7EXAMPLE';
  const request = {
    description: `rotate ${secret}`,
    args: { notes: 'card 4111 1111 1111 1111', nested: { list: ['ok', `key ${secret}`] }, 'odd key': 'mail bob@example.com' },
    alternatives: [{ name: 'alt', action: 'send_alert', args: { to: 'eve@example.com' } }],
  };

  it('reports pattern and path, never the matched text', () => {
    const matches = scanContent(request, ['secret', 'credit_card', 'email'], policy);
    expect(matches).toEqual([
      { pattern: 'secret', path: 'description' },
      { pattern: 'secret', path: 'args.nested.list[1]' },
      { pattern: 'credit_card', path: 'args.notes' },
      { pattern: 'email', path: 'args["odd key"]' },
      { pattern: 'email', path: 'alternatives[0].args.to' },
    ]);
    expect(JSON.stringify(matches)).not.toContain(secret);
    expect(JSON.stringify(matches)).not.toContain('4111');
  });

  it('scans keys as well as values', () => {
    expect(scanContent({ args: { 'bob@example.com': true } }, ['email'], policy)).toEqual([{ pattern: 'email', path: 'args["bob@example.com"]' }]);
  });

  it('only looks for the named patterns and ignores unknown names', () => {
    expect(scanContent(request, ['us_ssn', 'no_such_pattern'], policy)).toEqual([]);
  });

  it('uses user-defined patterns from the policy', () => {
    const r = parsePolicy('contentPatterns: { employee_id: "EMP-\\\\d{6}", codename: { regex: "project\\\\s+falcon", flags: i } }');
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    expect(scanContent({ args: { who: 'EMP-123456' }, description: 'Project  FALCON' }, ['employee_id', 'codename'], r.policy)).toEqual([
      { pattern: 'employee_id', path: 'args.who' },
      { pattern: 'codename', path: 'description' },
    ]);
  });

  it(`stops after ${SCAN_LIMIT_CHARS} characters and says so`, () => {
    const pad = 'x'.repeat(SCAN_LIMIT_CHARS);
    const r = scanContentBounded({ args: { a: pad, b: `key ${secret}` } }, ['secret'], policy);
    expect(r.truncated).toBe(true);
    expect(r.matches).toEqual([]);
    const small = scanContentBounded({ args: { b: `key ${secret}` } }, ['secret'], policy);
    expect(small).toEqual({ matches: [{ pattern: 'secret', path: 'args.b' }], truncated: false });
  });

  it('stops at very deep nesting and says so', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < 100; i++) deep = { d: deep };
    expect(scanContentBounded({ args: { deep } }, ['secret'], policy).truncated).toBe(true);
  });
});

describe('bounded work on adversarial text', () => {
  // Not a timing test of speed targets: a guard against regexes that are quadratic or worse,
  // which would take minutes (not milliseconds) on these inputs.
  it.each(['a', '1', '1 ', 'a@', 'a.', ':', '-', 'eyJ', 'sk-', 'password', 'a@a.'])('scans 256 KiB of %j quickly', (unit) => {
    const text = unit.repeat(Math.ceil(SCAN_LIMIT_CHARS / unit.length)).slice(0, SCAN_LIMIT_CHARS - 10);
    const start = Date.now();
    scanContent({ args: { t: text } }, ['us_ssn', 'credit_card', 'secret', 'email', 'ip_address'], policy);
    expect(Date.now() - start).toBeLessThan(2_000);
  });
});
