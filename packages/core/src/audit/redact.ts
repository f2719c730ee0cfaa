/**
 * PII redaction for what the audit trail stores: values under personal-data field names, and
 * personal data found inside any string (emails, IP addresses, US SSNs, card numbers that pass
 * Luhn, secrets and tokens), become deterministic tokens such as `[email:5f1c0e9ab2d4c781e0aa]`.
 * The token is a keyed hash (the shell passes `tokenize`, e.g. HMAC-SHA256 under a server key),
 * so one value always maps to one token and investigations can still join on it, while the
 * value cannot be guessed back by hashing candidates without the key.
 *
 *   const redactor = createRedactor({ tokenize: (kind, v) => hmacHex(key, `${kind}:${v}`).slice(0, 20) });
 *   redactor.redact({ email: 'a@b.example', reason: 'called 203.0.113.7' });
 *   // → { email: '[email:…]', reason: 'called [ip_address:…]' }
 */
import { canonicalJson } from '../canonical.ts';
import { luhnValid } from '../policy/patterns.ts';

/** Field names redacted whatever their content (compared without case, `_` or `-`). */
export const DEFAULT_REDACTED_FIELDS: readonly string[] = Object.freeze(['email', 'ip_address', 'ipAddress', 'user_id', 'userId', 'phone_number', 'phoneNumber']);

const normalize = (name: string) => name.toLowerCase().replace(/[_-]/g, '');

/** Field names that hold the same kind of value a content pattern finds share its token kind, so they join. */
const KIND_OF_FIELD: Readonly<Record<string, string>> = { email: 'email', ipaddress: 'ip_address', userid: 'user_id', phonenumber: 'phone_number' };

const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const H = '[0-9A-Fa-f]{1,4}';

/** Content patterns, in the order they are applied (each on what the earlier ones left). */
const PATTERNS: ReadonlyArray<{ kind: string; re: RegExp; accept?: (match: string) => boolean }> = [
  // Secrets first: a token can contain what looks like other data.
  {
    kind: 'secret',
    re: /\b(?:sk|pk|rk)_(?:live|test)_[0-9A-Za-z]{10,}\b|\bgh[pousr]_[0-9A-Za-z]{30,}\b|\bxox[abprs]-[0-9A-Za-z-]{10,}\b|\bAKIA[0-9A-Z]{16}\b|\beyJ[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\.[0-9A-Za-z_-]{8,}\b|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----/g,
  },
  { kind: 'email', re: /[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g },
  { kind: 'us_ssn', re: /\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b/g },
  { kind: 'credit_card', re: /\b\d(?:[ -]?\d){12,18}\b/g, accept: (m) => luhnValid(m.replace(/\D/g, '')) },
  { kind: 'ip_address', re: new RegExp(`(?<![\\d.])${OCTET}(?:\\.${OCTET}){3}(?![\\d.]*\\d)`, 'g') },
  { kind: 'ip_address', re: new RegExp(`(?<![0-9A-Za-z:])(?:(?:${H}:){7}${H}|(?:${H}:){1,6}:(?:${H}(?::${H}){0,5})?)(?![0-9A-Za-z:])`, 'g') },
];

/**
 * Field names left as they are: who acted and what the system computed (identities are what an
 * audit trail is for; hashes and ids carry no personal data).
 */
export const DEFAULT_EXEMPT_FIELDS: readonly string[] = Object.freeze(['deciders', 'name', 'agentName', 'agentId', 'operatorId', 'keyId', 'prefix', 'hash', 'payloadHash', 'requestId']);

export interface RedactorOptions {
  /** The keyed hash: returns the token body (e.g. 20 hex digits) for `value` of `kind`. */
  tokenize: (kind: string, value: string) => string;
  /** Field names to redact whole (default `DEFAULT_REDACTED_FIELDS`). */
  fields?: readonly string[];
  /** Apply the content patterns to every string (default true). */
  patterns?: boolean;
  /** Field names never touched (default `DEFAULT_EXEMPT_FIELDS`). */
  exempt?: readonly string[];
}

export interface Redactor {
  /** A copy of `value` (JSON data) with personal data replaced by tokens. */
  redact(value: unknown): unknown;
  /** The token for one value, e.g. to look up a redacted email in the trail. */
  token(kind: string, value: string): string;
}

/**
 * Strings longer than this are not scanned but become one token (`[long_text:…]`). The patterns
 * below run on V8's backtracking engine, and some are quadratic on hostile text (the email
 * pattern on a long run of letters without `@`); agent text reaches the trail (a slicing alert
 * names the agent's argument keys, which have no length cap of their own), so the length bounds
 * the work: at most about 2,048² steps per string, a few milliseconds. Every free text the
 * schemas accept for the trail (reasons, execution errors: 2,000 characters) is still scanned.
 */
export const MAX_SCRUB_CHARS = 2_048;

/**
 * What one entry may have scanned in all (a `redact` call): many strings each under
 * {@link MAX_SCRUB_CHARS} would otherwise add up (an alert listing thousands of argument names).
 * Past it, every further string is one token as well: fail closed, at once.
 */
export const MAX_SCRUB_TOTAL = 32 * MAX_SCRUB_CHARS;

/** Deeper structures are not walked; anything below becomes one token. */
const MAX_DEPTH = 32;

export function createRedactor(options: RedactorOptions): Redactor {
  const fields = new Set((options.fields ?? DEFAULT_REDACTED_FIELDS).map(normalize));
  const exempt = new Set((options.exempt ?? DEFAULT_EXEMPT_FIELDS).map(normalize));
  const patterns = options.patterns ?? true;
  const token = (kind: string, value: string) => `[${kind}:${options.tokenize(kind, value)}]`;

  const scrub = (text: string, budget: { left: number }): string => {
    if (!patterns) return text;
    // Too long to scan with these (backtracking) regexes in bounded time: fail closed, one token.
    if (text.length > MAX_SCRUB_CHARS || text.length > budget.left) return token('long_text', text);
    budget.left -= text.length;
    let out = text;
    for (const { kind, re, accept } of PATTERNS) {
      out = out.replace(re, (match) => (accept && !accept(match) ? match : token(kind, match)));
    }
    return out;
  };

  const walk = (value: unknown, depth: number, budget: { left: number }): unknown => {
    if (typeof value === 'string') return scrub(value, budget);
    if (value === null || typeof value !== 'object') return value;
    if (depth >= MAX_DEPTH) return token('data', canonicalJson(value));
    if (Array.isArray(value)) return value.map((v) => walk(v, depth + 1, budget));
    const out: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
      const name = normalize(key);
      if (exempt.has(name) && !fields.has(name)) {
        out[key] = v;
      } else if (fields.has(name) && v !== null && v !== undefined) {
        out[key] = token(KIND_OF_FIELD[name] ?? name, typeof v === 'string' ? v : canonicalJson(v));
      } else {
        out[key] = walk(v, depth + 1, budget);
      }
    }
    return out;
  };

  return { redact: (value) => walk(value, 0, { left: MAX_SCRUB_TOTAL }), token };
}
