/**
 * Sensitive-content detection over what an agent proposes.
 *
 * What is scanned: the request `description`, every key and every string or number inside
 * `args` (recursively), and the `args`/`description` of each alternative, because a reviewer
 * may pick an alternative and then it is what runs. Each key/value pair is scanned as the text
 * `key=value`, so `{ password: "hunter2" }` is caught by the same `password=…` pattern as a
 * free-text `password=hunter2`.
 *
 * Bounded work: at most {@link SCAN_LIMIT_CHARS} characters (256 Ki) are scanned per request,
 * and at most {@link SCAN_MAX_DEPTH} levels of nesting. Anything beyond is not looked at and the
 * scan reports `truncated`, which the evaluator treats as "could not rule out sensitive data"
 * and sends to a human (fail closed: padding args must not hide a secret past the limit).
 *
 * Results name the pattern and where it matched (`args.notes`, `description`,
 * `alternatives[0].args.to`), never the matched text: results end up in assessments, logs and
 * notifications, and echoing a secret there would leak it further.
 *
 * Linear time: every pattern here, built-in or the policy's, runs on RE2 (`linear.ts`) or is a
 * hand-written scanner whose bound is argued where it is defined, so an agent cannot choose text
 * that makes the scan slow (BENCHMARKS.md, "Matching agent text", measures the worst inputs).
 */
import type { CreateRequest } from '../schemas.ts';
import type { ContentPatternSource, Policy } from './types.ts';
import { compileLinear, JS_SPACE, linear, re2, type LinearRegex } from './linear.ts';
import { isPlainObject, own } from './util.ts';

export const SCAN_LIMIT_CHARS = 256 * 1024;
export const SCAN_MAX_DEPTH = 32;

export interface ContentMatch {
  readonly pattern: string;
  readonly path: string;
}

type Detector = (text: string) => boolean;

/** Luhn checksum over a digit string: catches card numbers, ignores most random digit runs. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

const isDigit = (c: number): boolean => c >= 48 && c <= 57;
const DASH = 45;
const SPACE = 32;
/** Issuer prefixes in use (2-series Mastercard, Amex/Diners/JCB, Visa, Mastercard, Discover/UnionPay). */
const CARD_PREFIX = /^(?:2[2-7]|3[0-9]|4|5[1-5]|6)/;

/**
 * Card numbers: runs of 13–19 digits, optionally grouped by single spaces or dashes, not touching
 * another digit or dash, that carry an issuer prefix and pass Luhn.
 *
 * A hand-written scanner rather than a regex, because each candidate's digits must go to the Luhn
 * check. It finds exactly what `(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])` found with `matchAll`
 * (leftmost, longest first, not overlapping), in linear time: from each start it reads at most 19
 * digits (each optionally preceded by one separator, a step that is forced by the text), then tries
 * the lengths 19 down to 13 for one whose end touches no digit or dash. That is at most 38
 * characters read and 7 end checks per start, and a start is a digit whose predecessor is neither a
 * digit nor a dash, so all work is O(n).
 */
function hasCardNumber(text: string): boolean {
  const ends: number[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    const prev = i === 0 ? -1 : text.charCodeAt(i - 1);
    if (!isDigit(c) || isDigit(prev) || prev === DASH) {
      i++;
      continue;
    }
    // ends[k] is where the candidate of k + 1 digits ends (exclusive).
    ends.length = 0;
    let p = i + 1;
    ends.push(p);
    while (ends.length < 19) {
      const a = text.charCodeAt(p);
      if (isDigit(a)) p += 1;
      else if ((a === SPACE || a === DASH) && isDigit(text.charCodeAt(p + 1))) p += 2;
      else break;
      ends.push(p);
    }
    let matchedEnd = -1;
    for (let k = ends.length; k >= 13; k--) {
      const end = ends[k - 1] as number;
      const next = end < text.length ? text.charCodeAt(end) : -1;
      if (!isDigit(next) && next !== DASH) {
        matchedEnd = end;
        break;
      }
    }
    if (matchedEnd === -1) {
      i++;
      continue;
    }
    let digits = '';
    for (let q = i; q < matchedEnd; q++) if (isDigit(text.charCodeAt(q))) digits += text[q];
    if (CARD_PREFIX.test(digits) && !/^(\d)\1+$/.test(digits) && luhnValid(digits)) return true;
    i = matchedEnd;
  }
  return false;
}

/**
 * US social security numbers `AAA-GG-SSSS` (or with spaces), areas 000, 666 and 9xx, group 00 and
 * serial 0000 excluded. The exclusions, written as lookaheads and a backreference before, are
 * spelled out as alternatives so the pattern is regular and runs on RE2.
 */
const SSN_AREA = '(?:00[1-9]|0[1-9]\\d|[1-578]\\d\\d|6[0-57-9]\\d|66[0-57-9])';
const SSN_GROUP = '(?:0[1-9]|[1-9]\\d)';
const SSN_SERIAL = '(?:000[1-9]|00[1-9]\\d|0[1-9]\\d\\d|[1-9]\\d{3})';
const SSN = linear(`(?:^|[^\\d-])(?:${SSN_AREA}-${SSN_GROUP}-${SSN_SERIAL}|${SSN_AREA} ${SSN_GROUP} ${SSN_SERIAL})(?:$|[^\\d-])`);

/**
 * Secret formats, as one RE2 pattern (one pass over the text). A one-character lookbehind or
 * lookahead is written as "start of text or a character not in the class", which for a yes/no
 * question means the same.
 */
const SECRETS = linear(
  [
    '\\b(?:AKIA|ASIA)[0-9A-Z]{16}\\b', // AWS access key id
    '\\bgh[pousr]_[A-Za-z0-9]{36,255}\\b', // GitHub tokens
    '\\bgithub_pat_[A-Za-z0-9_]{40,255}\\b',
    '\\bxox[abposr]-[A-Za-z0-9-]{10,}', // Slack tokens
    '\\bsk-[A-Za-z0-9_-]{20,}', // OpenAI-style secret keys
    '\\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}', // Stripe
    '-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----', // PEM private keys
    '\\beyJ[A-Za-z0-9_-]{8,}\\.eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}', // JWT
  ].join('|'),
);
/**
 * `password=…` and its kin, the keyword case-insensitive. Written in RE2 syntax: only the keyword
 * folds case (`(?i:…)`), because RE2's Unicode folding of a case-insensitive `[^A-Za-z0-9]` would
 * also exclude K (U+212A) and ſ (U+017F), so `\u212Apassword=…` would no longer count as a keyword
 * at a word start (review D4). `\s` is JavaScript's.
 */
const SECRET_ASSIGNMENT = re2(
  `(?:^|[^A-Za-z0-9])(?i:password|passwd|pwd|passphrase|secret|api[_-]?key|access[_-]?token|auth[_-]?token|client[_-]?secret)["']?[${JS_SPACE}]*[=:][${JS_SPACE}]*["']?[^${JS_SPACE}"',;&]{4,}`,
);

const EMAIL = linear('[A-Za-z0-9._%+-]@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}(?:$|[^A-Za-z0-9-])');

const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
/** Not part of a longer dotted number: what follows may be dots, but no further digit (was `(?![\d.]*\d)`). */
const IPV4 = linear(`(?:^|[^\\d.])${OCTET}(?:\\.${OCTET}){3}\\.*(?:$|[^\\d.])`);
const H = '[0-9A-Fa-f]{1,4}';
/** Full eight-group form, or a compressed form with `::` (times like 10:30:00 do not match). */
const IPV6 = linear(`(?:^|[^0-9A-Za-z:])(?:(?:${H}:){7}${H}|(?:${H}:){0,6}${H}?::(?:${H}(?::${H}){0,6})?)(?:$|[^0-9A-Za-z:])`);

/** The built-in patterns; their names are reserved in `contentPatterns`. */
export const BUILTIN_PATTERNS: Readonly<Record<string, Detector>> = Object.freeze({
  us_ssn: (t) => SSN.test(t),
  credit_card: hasCardNumber,
  secret: (t) => SECRETS.test(t) || SECRET_ASSIGNMENT.test(t),
  email: (t) => t.includes('@') && EMAIL.test(t),
  ip_address: (t) => IPV4.test(t) || (t.includes(':') && IPV6.test(t)),
});

export const BUILTIN_PATTERN_NAMES: readonly string[] = Object.freeze(Object.keys(BUILTIN_PATTERNS));

/**
 * Compiles a user pattern to the linear-time matcher, or returns why it cannot be used (policy
 * validation reports it under the pattern's key, so a pattern RE2 cannot take refuses the policy).
 */
export function compileUserPattern(source: ContentPatternSource): LinearRegex | string {
  if (source.regex.length === 0) return 'an empty pattern would match every request';
  const re = compileLinear(source.regex, source.flags);
  if (typeof re === 'string') return re;
  if (re.test('')) return 'the pattern matches empty text, so it would match every request';
  return re;
}

function detectorFor(name: string, policy: Policy): Detector | undefined {
  const builtin = own(BUILTIN_PATTERNS, name);
  if (builtin) return builtin;
  const source = own(policy.contentPatterns, name);
  if (!source) return undefined;
  const re = compileUserPattern(source);
  return typeof re === 'string' ? undefined : (t) => re.test(t);
}

interface Piece {
  readonly path: string;
  readonly text: string;
}

const IDENT = /^[A-Za-z_$][\w$]*$/;

function childPath(parent: string, key: string): string {
  return IDENT.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;
}

/** Flattens what is scanned into (path, text) pieces, stopping once the budget is spent. */
function collectPieces(request: Pick<CreateRequest, 'args' | 'description' | 'alternatives'>): { pieces: Piece[]; truncated: boolean } {
  const pieces: Piece[] = [];
  let budget = SCAN_LIMIT_CHARS;
  let truncated = false;

  const push = (path: string, text: string): void => {
    if (truncated || text.length === 0) return;
    if (text.length > budget) {
      pieces.push({ path, text: text.slice(0, budget) });
      budget = 0;
      truncated = true;
      return;
    }
    pieces.push({ path, text });
    budget -= text.length;
  };

  const scalar = (value: unknown): string | undefined =>
    typeof value === 'string' ? value : typeof value === 'number' || typeof value === 'bigint' ? String(value) : undefined;

  const walk = (value: unknown, path: string, key: string | undefined, depth: number): void => {
    if (truncated) return;
    const text = scalar(value);
    if (text !== undefined) {
      push(path, key === undefined ? text : `${key}=${text}`);
      return;
    }
    if (key !== undefined) push(path, key);
    if (typeof value !== 'object' || value === null) return;
    if (depth >= SCAN_MAX_DEPTH) {
      truncated = true;
      return;
    }
    if (Array.isArray(value)) {
      value.forEach((item, i) => walk(item, `${path}[${i}]`, undefined, depth + 1));
    } else {
      for (const [k, v] of Object.entries(value)) walk(v, childPath(path, k), k, depth + 1);
    }
  };

  if (request.description !== undefined) push('description', request.description);
  if (isPlainObject(request.args)) walk(request.args, 'args', undefined, 0);
  for (const [i, alt] of (request.alternatives ?? []).entries()) {
    if (alt.description !== undefined) push(`alternatives[${i}].description`, alt.description);
    walk(alt.args, `alternatives[${i}].args`, undefined, 0);
  }
  return { pieces, truncated };
}

/** Like {@link scanContent}, also saying whether the scan stopped at its limit. */
export function scanContentBounded(
  request: Pick<CreateRequest, 'args' | 'description' | 'alternatives'>,
  patternNames: readonly string[],
  policy: Policy,
): { matches: ContentMatch[]; truncated: boolean } {
  const detectors = [...new Set(patternNames)].flatMap((name) => {
    const d = detectorFor(name, policy);
    return d ? [[name, d] as const] : [];
  });
  const { pieces, truncated } = collectPieces(request);
  const matches: ContentMatch[] = [];
  for (const [name, detect] of detectors) {
    const seen = new Set<string>();
    for (const piece of pieces) {
      if (!seen.has(piece.path) && detect(piece.text)) {
        seen.add(piece.path);
        matches.push({ pattern: name, path: piece.path });
      }
    }
  }
  return { matches, truncated };
}

/**
 * Which of the named patterns (built-in or the policy's `contentPatterns`) occur in the
 * request, and where. Unknown names are ignored (policy validation rejects them earlier).
 */
export function scanContent(
  request: Pick<CreateRequest, 'args' | 'description' | 'alternatives'>,
  patternNames: readonly string[],
  policy: Policy,
): ContentMatch[] {
  return scanContentBounded(request, patternNames, policy).matches;
}
