import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePolicy, SCAN_LIMIT_CHARS } from '../src/policy/index.ts';
import { globMatch, globSource } from '../src/policy/glob.ts';
import { compileLinear, MAX_PATTERN_PROGRAM } from '../src/policy/linear.ts';
import { BUILTIN_PATTERNS, luhnValid } from '../src/policy/patterns.ts';

/**
 * The backtracking regexes the built-ins were before they moved to RE2 and a scanner, kept here as
 * the reference: on short texts over an alphabet that exercises their edges, the new detectors must
 * say exactly what these said.
 */
const OLD = {
  card: (text: string): boolean => {
    for (const m of text.matchAll(/(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g)) {
      const digits = m[0].replace(/[ -]/g, '');
      if (/^(?:2[2-7]|3[0-9]|4|5[1-5]|6)/.test(digits) && !/^(\d)\1+$/.test(digits) && luhnValid(digits)) return true;
    }
    return false;
  },
  ssn: (text: string): boolean => /(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])/.test(text),
  ipv4: (text: string): boolean => {
    const O = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
    return new RegExp(`(?<![\\d.])${O}(?:\\.${O}){3}(?![\\d.]*\\d)`).test(text);
  },
  email: (text: string): boolean => /[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9-])/.test(text),
};

const textOf = (alphabet: string[], maxLength = 60) => fc.array(fc.constantFrom(...alphabet), { maxLength }).map((a) => a.join(''));
const detect = (name: string, text: string): boolean => (BUILTIN_PATTERNS[name] as (t: string) => boolean)(text);

describe('the built-ins say what their backtracking originals said', () => {
  it('credit_card (scanner) on digits, spaces and dashes', () => {
    // Runs of real card numbers' digits, so Luhn-valid candidates actually occur.
    const pieces = ['4111', '1111', '4', '1', '0', '5', '3782', '822463', '10005', ' ', '-', 'x', '  '];
    fc.assert(fc.property(textOf(pieces, 20), (t) => {
      expect(detect('credit_card', t)).toBe(OLD.card(t));
    }), { numRuns: 3000 });
    for (const t of ['4111 1111 1111 1111', '4111-1111-1111-1111', '4111111111111111', 'x4111111111111111-', '44111111111111111111', '4111 1111 1111 1111 4111111111111111']) {
      expect(detect('credit_card', t)).toBe(OLD.card(t));
    }
  });

  it('us_ssn (alternatives instead of lookahead and backreference)', () => {
    const pieces = ['0', '00', '000', '6', '66', '666', '9', '1', '12', '123', '0000', '4567', '-', ' ', 'x'];
    fc.assert(fc.property(textOf(pieces, 12), (t) => {
      expect(detect('us_ssn', t)).toBe(OLD.ssn(t));
    }), { numRuns: 3000 });
  });

  it('ip_address (IPv4: a trailing run of dots is allowed, a further digit is not)', () => {
    const pieces = ['1', '25', '255', '256', '0', '10', '.', '..', 'x', '9'];
    // No ':' in the alphabet, so the IPv6 half stays out of it.
    fc.assert(fc.property(textOf(pieces, 16), (t) => {
      expect(detect('ip_address', t)).toBe(OLD.ipv4(t));
    }), { numRuns: 3000 });
  });

  it('email', () => {
    const pieces = ['a', 'b1', '.', '@', '-', 'x.y', 'com', ' ', '+'];
    fc.assert(fc.property(textOf(pieces, 14), (t) => {
      expect(detect('email', t)).toBe(OLD.email(t));
    }), { numRuns: 3000 });
  });
});

describe('compileLinear keeps JavaScript meaning or refuses', () => {
  it('\\s is JavaScript whitespace, . excludes every line terminator', () => {
    const space = compileLinear('^a\\sb$', '') as { test(t: string): boolean };
    for (const s of [' ', '\t', '\u00a0', '\u2028', '\u3000', '\ufeff']) expect(space.test(`a${s}b`)).toBe(true);
    const dot = compileLinear('^a.b$', '') as { test(t: string): boolean };
    for (const s of ['\n', '\r', '\u2028', '\u2029']) expect(dot.test(`a${s}b`)).toBe(false);
    expect(dot.test('axb')).toBe(true);
    expect((compileLinear('^a.b$', 's') as { test(t: string): boolean }).test('a\rb')).toBe(true);
    expect((compileLinear('[\\s,]x', '') as { test(t: string): boolean }).test('\u00a0x')).toBe(true);
  });

  it.each([
    ['(a)\\1', 'backreferences'],
    ['(?<n>a)\\k<n>', 'backreferences'],
    ['a(?=b)', 'lookahead'],
    ['a(?!b)', 'lookahead'],
    ['\\Aa', 'just the letter A'],
    ['[[:alpha:]]', 'POSIX'],
    ['[]a', 'empty class'],
    ['\\x{41}', 'repeated without the u flag'],
  ])('refuses %j (%s)', (source, why) => {
    expect(compileLinear(source, '')).toEqual(expect.stringContaining(why));
  });

  it('takes lookbehind (linear in re2js) and named groups', () => {
    const re = compileLinear('(?<![a-z])key(?<rest>[0-9]+)', 'u') as { test(t: string): boolean };
    expect(re.test('1key22')).toBe(true);
    expect(re.test('akey22')).toBe(false);
  });

  it('a policy whose content pattern or argument pattern RE2 cannot take is refused, naming the key', () => {
    const r = parsePolicy('contentPatterns:\n  twice: "(\\\\w+) \\\\1"\n  ahead: { regex: "secret(?=:)", flags: i }\n');
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors;
    expect(errors).toEqual(
      expect.arrayContaining([
        { path: 'contentPatterns.twice', message: expect.stringContaining('backreferences') },
        { path: 'contentPatterns.ahead', message: expect.stringContaining('lookahead') },
      ]),
    );
    const a = parsePolicy('actions:\n  a: { weight: 0.3, args: { s: { type: string, pattern: "^(x)\\\\1$" } } }');
    expect(a.ok ? [] : a.errors).toEqual([{ path: 'actions.a.args.s.pattern', message: expect.stringContaining('backreferences') }]);
  });
});

describe('a pattern\'s cost is bounded at load (review D5: counted repetitions expand)', () => {
  it('a content or argument pattern over the instruction budget is refused, naming the key; one under it loads', () => {
    const r = parsePolicy('contentPatterns:\n  wide: "(?:a|b){1,1000}c"\nactions:\n  a: { weight: 0.3, args: { s: { type: string, pattern: "^[a-z]{1,600}[0-9]{1,600}$" } } }\n');
    expect(r.ok).toBe(false);
    expect(r.ok ? [] : r.errors).toEqual(
      expect.arrayContaining([
        { path: 'contentPatterns.wide', message: expect.stringContaining(`at most ${MAX_PATTERN_PROGRAM}`) },
        { path: 'actions.a.args.s.pattern', message: expect.stringContaining('counted repetitions') },
      ]),
    );
    expect(parsePolicy('contentPatterns:\n  ok: "(?:a|b){1,400}c"\n').ok).toBe(true);
  });

  it('the worst input against a pattern at the budget scans 1 MiB without stalling (bound generous for a loaded machine)', () => {
    const re = compileLinear('(?:a|b){1,490}c', '');
    if (typeof re === 'string') throw new Error(re);
    const text = ('a'.repeat(491) + '1c').repeat(Math.ceil((1 << 20) / 493));
    const started = performance.now();
    expect(re.test(text)).toBe(false);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('built-in patterns are not held to the author budget (they are measured in bench/matching.ts)', () => {
    expect(BUILTIN_PATTERNS.secret?.('ghp_' + 'a'.repeat(40))).toBe(true);
  });
});

describe('globs', () => {
  it('compile as before', () => {
    expect(globSource('*.prod.*')).toBe('^[^/]*\\.prod\\.[^/]*$');
    expect(globMatch('/a/**/b', '/a/b')).toBe(true);
    expect(globMatch('/a/**/b', '/a/x/y/b')).toBe(true);
    expect(globMatch('*.prod.*', 'db.PROD.example')).toBe(true);
    expect(globMatch('*.prod.*', 'a/db.prod.x')).toBe(false);
    expect(globMatch('prod-?', 'prod-1')).toBe(true);
    expect(globMatch('a+b(c)', 'a+b(c)')).toBe(true);
    expect(globMatch('a+b(c)', 'aab(c)')).toBe(false);
  });
});

describe('worst inputs stay fast (bound generous for a loaded machine)', () => {
  const units = ['-eyJ', 'eyJaaaaaaaa.', '.prod', '1 ', '1-', '1.', 'a.', 'a@', '@a.', '-----BEGIN A ', 'password ', 'password=', 'ghp_', 'sk-', 'a:', '1:', '::a', 'xoxb-', '123-45-'];
  it.each(units)('the built-ins scan 256 KiB of %j in well under the old seconds', (unit) => {
    const text = unit.repeat(Math.ceil(SCAN_LIMIT_CHARS / unit.length)).slice(0, SCAN_LIMIT_CHARS);
    const start = performance.now();
    for (const detect of Object.values(BUILTIN_PATTERNS)) detect(text);
    expect(performance.now() - start).toBeLessThan(3_000);
  });

  it('a glob on 1 MiB', () => {
    const text = '.prod'.repeat(1 << 18).slice(0, 1 << 20);
    const start = performance.now();
    for (const g of ['*.prod.*', 'prod-*', '/important/**', '**/secrets/**', '*-prod']) globMatch(g, text);
    expect(performance.now() - start).toBeLessThan(3_000);
  });
});

describe('audit redaction stays bounded on agent text', () => {
  it('a string longer than MAX_SCRUB_CHARS becomes one token, at once; shorter ones are still scanned', async () => {
    const { createRedactor, MAX_SCRUB_CHARS } = await import('../src/audit/redact.ts');
    const redactor = createRedactor({ tokenize: (kind, v) => `${kind}${v.length}` });
    const long = 'a'.repeat(1 << 20); // the email pattern was quadratic on this: hours
    const start = performance.now();
    expect(redactor.redact({ alerts: [{ fields: [long] }] })).toEqual({ alerts: [{ fields: [`[long_text:long_text${long.length}]`] }] });
    expect(performance.now() - start).toBeLessThan(1_000);
    const short = `${'a'.repeat(MAX_SCRUB_CHARS - 20)} ann@example.com`;
    expect(redactor.redact({ reason: short })).toEqual({ reason: `${'a'.repeat(MAX_SCRUB_CHARS - 20)} [email:email15]` });
    const worst = 'a'.repeat(MAX_SCRUB_CHARS);
    const t0 = performance.now();
    redactor.redact({ reason: worst });
    expect(performance.now() - t0).toBeLessThan(1_000);
  });
});

describe('audit redaction has a budget per entry, not only per string', () => {
  it('many strings each under the per-string cap: the scan stops at the entry budget and the rest become tokens', async () => {
    const { createRedactor, MAX_SCRUB_CHARS, MAX_SCRUB_TOTAL } = await import('../src/audit/redact.ts');
    const redactor = createRedactor({ tokenize: (kind, v) => `${kind}${v.length}` });
    const piece = 'a'.repeat(MAX_SCRUB_CHARS); // the email pattern's worst case, each one a full scan
    const fields = Array.from({ length: 2_000 }, () => piece);
    const start = performance.now();
    const out = redactor.redact({ alerts: [{ fields }] }) as { alerts: Array<{ fields: string[] }> };
    expect(performance.now() - start).toBeLessThan(10_000);
    const scanned = out.alerts[0]!.fields.filter((f) => f === piece).length;
    expect(scanned).toBe(MAX_SCRUB_TOTAL / MAX_SCRUB_CHARS);
    expect(out.alerts[0]!.fields.slice(scanned).every((f) => f === `[long_text:long_text${MAX_SCRUB_CHARS}]`)).toBe(true);
    // The budget is per entry: the next entry is scanned again from the start.
    expect(redactor.redact({ reason: 'mail ann@example.com' })).toEqual({ reason: 'mail [email:email15]' });
  });
});

describe('m flag: every JavaScript line terminator ends a line (review D1)', () => {
  it.each([
    ['^rm -rf', 'x\rrm -rf /'],
    ['^rm -rf', 'x\u2028rm -rf /'],
    ['^rm -rf', 'x\u2029rm -rf /'],
    ['secret$', 'secret\r\nx'],
    ['^\\s*curl', 'ok\rcurl evil'],
  ])('/%s/m matches %j as JavaScript does', (source, text) => {
    expect(new RegExp(source, 'm').test(text)).toBe(true);
    const re = compileLinear(source, 'm');
    if (typeof re === 'string') throw new Error(re);
    expect(re.test(text)).toBe(true);
  });
  it('still does not match where JavaScript does not', () => {
    const re = compileLinear('^rm -rf', 'm');
    if (typeof re === 'string') throw new Error(re);
    expect(re.test('x rm -rf /')).toBe(false);
  });
});

describe('built-in secret keyword boundary (review D4)', () => {
  it.each(['\u212Apassword=hunter22', '\u017Fsecret=hunter22', 'x password: hunter22', 'API_KEY = "abcd1234"'])('finds %j as the old pattern did', (text) => {
    expect(BUILTIN_PATTERNS.secret!(text)).toBe(true);
  });
  it.each(['mypassword=hunter22', 'password', 'password = ab'])('does not find %j', (text) => {
    expect(BUILTIN_PATTERNS.secret!(text)).toBe(false);
  });
});
