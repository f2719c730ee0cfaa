/**
 * Reading a validator's answer, failing closed. The server's caller hands over the status, the
 * content type and the body it read (already capped at MAX_PRECHECK_RESPONSE_BYTES while
 * streaming); this decides allow / deny / error. Anything unexpected is an error, which the
 * validator's `onError` then judges (precheckOutcomes).
 *
 * http: `{"allow": boolean, "reasons": string[], "risk"?: level}`.
 * opa:  `{"result": {"allow": boolean, "reasons"?: string[], "risk"?: level}}`; no `result` is
 *       OPA's "undefined document": a deny, whatever onError says.
 * Duplicate keys anywhere are refused (JSON.parse would keep the last `allow`), as is nesting
 * deeper than 32. The parser is a single pass (linear in the body).
 */
import { RISK_LEVELS, type RiskLevel } from '../schemas.ts';

export const MAX_PRECHECK_RESPONSE_BYTES = 64 * 1024;
export const MAX_PRECHECK_REASONS = 10;
export const MAX_PRECHECK_REASON_CHARS = 300;

export type ValidatorAnswer =
  | { status: 'allow' | 'deny'; reasons: string[]; raiseTo?: RiskLevel }
  | { status: 'error'; reasons: string[]; error: string };

// The error text quotes what the validator sent (a duplicate key, its content type): untrusted, so cleaned like a reason (F2).
const fail = (error: string): ValidatorAnswer => ({ status: 'error', reasons: [], error: cleanReason(error) });

export function readValidatorAnswer(kind: 'http' | 'opa', answer: { status: number; contentType: string | null; body: string; truncated: boolean }): ValidatorAnswer {
  if (answer.status < 200 || answer.status > 299) return fail(`HTTP ${answer.status}`);
  if (answer.truncated) return fail(`response larger than ${MAX_PRECHECK_RESPONSE_BYTES} bytes`);
  const type = (answer.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]*\+json$/.test(type)) return fail(`content type ${JSON.stringify(type.slice(0, 100))} is not JSON`);
  const parsed = strictJson(answer.body);
  if (!parsed.ok) return fail(`malformed JSON: ${parsed.error}`);
  let doc = parsed.value;
  if (kind === 'opa') {
    if (!isObject(doc)) return fail('an OPA answer is an object');
    if (!Object.hasOwn(doc, 'result')) return { status: 'deny', reasons: ['the OPA decision is undefined (no result)'] };
    doc = doc['result'];
  }
  if (!isObject(doc)) return fail('the decision is not an object');
  const allow = doc['allow'];
  if (typeof allow !== 'boolean') return fail('allow is not a boolean');
  const rawReasons = doc['reasons'] ?? (kind === 'opa' ? [] : undefined);
  if (!Array.isArray(rawReasons) || !rawReasons.every((r) => typeof r === 'string')) return fail('reasons is not a list of strings');
  const reasons = (rawReasons as string[]).slice(0, MAX_PRECHECK_REASONS).map(cleanReason);
  if (rawReasons.length > MAX_PRECHECK_REASONS) reasons.push(`(${rawReasons.length - MAX_PRECHECK_REASONS} more reasons not kept)`);
  const risk = doc['risk'];
  if (risk !== undefined && !(typeof risk === 'string' && (RISK_LEVELS as readonly string[]).includes(risk))) return fail('risk is not a risk level');
  if (!allow) return { status: 'deny', reasons };
  return risk === undefined ? { status: 'allow', reasons } : { status: 'allow', reasons, raiseTo: risk as RiskLevel };
}

/** Untrusted text, bounded: control characters (C0, DEL, C1, bidi and line separators) become spaces, at most MAX_PRECHECK_REASON_CHARS. */
export function cleanReason(text: string): string {
  let out = '';
  for (const ch of text) {
    if (out.length >= MAX_PRECHECK_REASON_CHARS) return `${out}…`;
    const c = ch.codePointAt(0)!;
    out += c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x2028 || c === 0x2029 || (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069) ? ' ' : ch;
  }
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** RFC 8259 JSON, refusing duplicate object keys and nesting deeper than 32. One pass. */
export function strictJson(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  class Bad extends Error {}
  const bad = (m: string): never => {
    throw new Bad(`${m} at ${i}`);
  };
  const str = (): string => {
    const start = i;
    i++; // "
    for (;;) {
      if (i >= n) bad('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) bad('control character in string');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) bad('bad \\u escape');
          i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) bad('bad escape');
        i += 2;
        continue;
      }
      i++;
    }
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): unknown => {
    if (depth > 32) bad('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const obj: Record<string, unknown> = {};
      const keys = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') bad('expected a key');
        const k = str();
        if (keys.has(k)) bad(`duplicate key ${JSON.stringify(k.slice(0, 50))}`);
        keys.add(k);
        ws();
        if (text[i] !== ':') bad('expected :');
        i++;
        Object.defineProperty(obj, k, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return obj;
        }
        bad('expected , or }');
      }
    }
    if (c === '[') {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return arr;
        }
        bad('expected , or ]');
      }
    }
    if (c === '"') return str();
    for (const [word, v] of [['true', true], ['false', false], ['null', null]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) return bad('unexpected character');
    i += m[0].length;
    return Number(m[0]);
  };
  try {
    const v = value(0);
    ws();
    if (i !== n) bad('trailing text');
    return { ok: true, value: v };
  } catch (err) {
    if (err instanceof Bad) return { ok: false, error: err.message };
    throw err;
  }
}
