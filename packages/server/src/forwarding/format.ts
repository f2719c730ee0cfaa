/**
 * What a SIEM receives, as pure functions of one audit entry: the entry exactly as the audit API
 * and an export show it (the data the writer stored, already redacted; never redacted again, so a
 * SIEM event carries the trail's own tokens and `redactionToken` finds it), an RFC 5424 syslog message with octet-counting
 * framing (RFC 6587 §3.4.1, RFC 5425 §4.3), and a newline-delimited JSON line.
 *
 * Agent text reaches these messages (descriptions, reasons, names), so every field is treated
 * as adversarial: structured-data values are escaped as RFC 5424 §6.3.3 requires (`"`, `\`, `]`)
 * and their control characters written as `\uXXXX` text, each value is cut to a bound, and the
 * whole message to `maxBytes`; the JSON (the message body and the NDJSON line) escapes every
 * control character and U+2028/U+2029, so no entry can end a line, a frame or an element early.
 *
 *   const entry = forwardEntry(row, (text) => trail.redact(text));
 *   socket.write(octetFrame(syslogMessage(entry, { hostname: 'cs-1', procId: '4242' })));
 */
import { createHash } from 'node:crypto';
import { entryOf } from '../audit/service.ts';
import type { AuditLogTable } from '../store/schema.ts';

/** An audit entry as forwarded: the public audit API's shape (`GET /v1/audit`). */
export interface ForwardEntry {
  seq: number;
  at: string;
  type: string;
  requestId: string | null;
  actor: { type: string; id: string; name: string };
  data: unknown;
}

/** The structured-data id: RFC 5612's documentation enterprise number until Countersign has its own. */
export const SD_ID = 'countersign@32473';
/** RFC 5424 facility 13, "log audit". */
export const FACILITY = 13;
/** The longest structured-data parameter value, in UTF-8 bytes, before it is cut (with `…`). */
export const MAX_PARAM_BYTES = 256;
/** RFC 5425 §4.3.1: receivers must take 2,048 octets and should take 8,192. */
export const DEFAULT_MAX_MESSAGE_BYTES = 8192;
/** The longest NDJSON line; longer entries keep their envelope and lose `data` (its size and hash stay). */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024;

/** Syslog severity per event type: 4 warning (refusals, alerts, tampering), 5 notice (outcomes and admin changes), else 6 informational. */
const WARNING = new Set([
  'review_refused',
  'create_refused',
  'claim_refused',
  'escalation_refused',
  'cooldown_stranded',
  'slicing_alert',
  'mfa_locked',
  'audit_entry_malformed',
  'review_forced',
  'agent_paused',
  'delivery_failed',
  'key_revoked',
  'operator_removed',
  'admin_recovered',
  'agent_config_refused',
  'screen_model_refused',
]);
const NOTICE = new Set([
  'approved',
  'rejected',
  'expired',
  'cancelled',
  'escalated',
  'execution_failed',
  'claim_lapsed',
  'approval_lapsed',
  'cooldown_started',
  'cooldown_lifted',
  'held',
  'aggregated',
  'operator_created',
  'operator_updated',
  'token_rotated',
  'key_created',
  'key_rotated',
  'audit_key_rotated',
  'encryption_rotated',
  'policy_loaded',
  'ip_allowlist_set',
  'credentials_adopted',
  'audit_state_adopted',
  'agent_config_changed',
  'agent_config_proposed',
  'operator_token_issued',
  'agent_created',
  'screen_model_adopted',
  'totp_enrolled',
  'agent_resumed',
]);

export function severityOf(type: string): 4 | 5 | 6 {
  return WARNING.has(type) ? 4 : NOTICE.has(type) ? 5 : 6;
}

/** CEF severity (0–10) for the same three bands, for the README's mapping. */
export function cefSeverityOf(type: string): number {
  return { 4: 7, 5: 5, 6: 3 }[severityOf(type)];
}

/**
 * The stored row as the audit API shows it: its data as the writer stored it (redacted once, at
 * write time). Running the redactor again would tokenize the redacted fields' tokens a second
 * time (`[email:T]` → `[email:HMAC("[email:T]")]`), so the SIEM's tokens would match neither the
 * trail nor `redactionToken`. Only a row whose data is not JSON (it did not come from the writer:
 * a database writer edited it) goes out as its text passed through `scrubText`, fail closed — for
 * a string the trail's redactor applies its content patterns only.
 */
export function forwardEntry(row: AuditLogTable, scrubText?: (text: string) => unknown): ForwardEntry {
  // A malformed row goes out as the text it is, pattern-redacted.
  return entryOf(row, isoTime, scrubText);
}

/** RFC 3339 in UTC with milliseconds; a time no Date can hold (a database writer's) is RFC 5424's NILVALUE. */
function isoTime(ms: number): string {
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  return Number.isNaN(date.getTime()) || year < 0 || year > 9999 ? '-' : date.toISOString();
}

/**
 * JSON with every control character written as an escape: JSON.stringify escapes C0 but leaves
 * DEL, C1 (U+0085 is a line end to some readers) and U+2028/U+2029 raw. One character class, linear.
 */
export function lineSafeJson(value: unknown): string {
  return (JSON.stringify(value) ?? 'null').replace(/[\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** At most `max` UTF-8 bytes of `text`, cut between code points, with `…` when cut. */
export function cutUtf8(text: string, max: number): string {
  if (Buffer.byteLength(text, 'utf8') <= max) return text;
  let out = '';
  let bytes = 0;
  const budget = max - 3; // the ellipsis
  for (const ch of text) {
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > budget) break;
    out += ch;
    bytes += n;
  }
  return `${out}…`;
}

/**
 * An RFC 5424 PARAM-VALUE: `"`, `\` and `]` escaped with a backslash (§6.3.3), lone surrogates
 * replaced, and control characters shown, not sent: C0 and DEL as their Unicode control pictures
 * (a newline is `␊`, U+240A), C1 and U+2028/U+2029 as U+FFFD. At most `maxBytes` as written
 * (escapes included), cut between escapes with `…`. The values are for indexing and search; the
 * exact text is in the message's JSON body.
 */
export function sdParamValue(value: string, maxBytes = MAX_PARAM_BYTES): string {
  // More code units than bytes allowed means more bytes too: look at no more than that.
  const head = value.length > maxBytes ? value.slice(0, maxBytes + 1) : value;
  const pieces: string[] = [];
  let total = 0;
  for (const ch of wellFormed(head)) {
    const code = ch.codePointAt(0)!;
    let piece: string;
    if (ch === '\\' || ch === '"' || ch === ']') piece = `\\${ch}`;
    else if (code < 0x20) piece = String.fromCharCode(0x2400 + code);
    else if (code === 0x7f) piece = '\u2421';
    else if ((code >= 0x80 && code <= 0x9f) || code === 0x2028 || code === 0x2029) piece = '\ufffd';
    else piece = ch;
    pieces.push(piece);
    total += Buffer.byteLength(piece, 'utf8');
  }
  if (total <= maxBytes) return pieces.join('');
  let out = '';
  let bytes = 0;
  for (const piece of pieces) {
    const n = Buffer.byteLength(piece, 'utf8');
    if (bytes + n > maxBytes - 3) break; // the ellipsis
    out += piece;
    bytes += n;
  }
  return `${out}…`;
}

/** Lone surrogates (not UTF-8 encodable) as U+FFFD; one pass, no regex. */
function wellFormed(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        out += text[i]! + text[i + 1]!;
        i++;
      } else out += '\ufffd';
    } else if (c >= 0xdc00 && c <= 0xdfff) out += '\ufffd';
    else out += text[i]!;
  }
  return out;
}

/** A header field: PRINTUSASCII only (§6), at most `max` characters, `-` when empty. */
function headerField(value: string, max: number): string {
  let clean = '';
  for (let i = 0; i < value.length && clean.length < max; i++) {
    const c = value.charCodeAt(i);
    clean += c >= 0x21 && c <= 0x7e ? value[i]! : '_';
  }
  return clean === '' ? '-' : clean;
}

export interface SyslogOptions {
  hostname: string;
  procId: string;
  appName?: string;
  /** The whole message's bound in bytes (default 8,192). */
  maxBytes?: number;
  /** `rfc5424` (default): structured data and the entry's JSON as MSG; `cef`: no structured data, a CEF event as MSG. */
  format?: 'rfc5424' | 'cef';
  /** The server's version, for the CEF header. */
  version?: string;
}

const BOM = '\uFEFF';

/**
 * One RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [countersign@32473 …] BOM json`.
 * MSGID is the event type; the structured data carries seq, type, requestId and the actor; the
 * message is the entry's JSON. Over `maxBytes`, the body keeps the envelope and replaces `data`
 * with `{truncated, bytes, sha256}` (and the element says `truncated="true"`).
 */
export function syslogMessage(entry: ForwardEntry, options: SyslogOptions): string {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const pri = FACILITY * 8 + severityOf(entry.type);
  const header = `<${pri}>1 ${entry.at} ${headerField(options.hostname, 255)} ${headerField(options.appName ?? 'countersign', 48)} ${headerField(options.procId, 128)} ${headerField(entry.type, 32)}`;
  if (options.format === 'cef') {
    // CEF over syslog: the event is the whole MSG (no BOM: receivers look for `CEF:` at its start).
    const prefix = `${header} - `;
    return prefix + cefMessage(entry, { version: options.version ?? '0', hostname: options.hostname, maxBytes: maxBytes - Buffer.byteLength(prefix, 'utf8') });
  }
  const params: Array<[string, string]> = [
    ['seq', String(entry.seq)],
    ['type', entry.type],
    ['requestId', entry.requestId ?? ''],
    ['actorType', entry.actor.type],
    ['actorId', entry.actor.id],
    ['actorName', entry.actor.name],
  ];
  const element = (extra: Array<[string, string]>, max = MAX_PARAM_BYTES) => `[${SD_ID}${[...params, ...extra].map(([k, v]) => ` ${k}="${sdParamValue(v, max)}"`).join('')}]`;
  const full = `${header} ${element([])} ${BOM}${lineSafeJson(entry)}`;
  if (Buffer.byteLength(full, 'utf8') <= maxBytes) return full;
  const body = lineSafeJson(truncatedEntry(entry));
  const short = `${header} ${element([['truncated', 'true']])} ${BOM}${body}`;
  if (Buffer.byteLength(short, 'utf8') <= maxBytes) return short;
  // Still over (a small bound, long names): values cut to 64 bytes, then only the body is cut —
  // the header (≤ 500 bytes) and this element (≤ 7 × 80) always fit in the smallest bound, 2,048.
  const shorter = `${header} ${element([['truncated', 'true']], 64)} ${BOM}`;
  return shorter + cutUtf8(body, maxBytes - Buffer.byteLength(shorter, 'utf8'));
}

/** The entry with `data` replaced by its size and hash, and the actor's fields bounded. */
function truncatedEntry(entry: ForwardEntry): ForwardEntry {
  const json = JSON.stringify(entry.data) ?? 'null';
  return {
    ...entry,
    requestId: entry.requestId === null ? null : cutUtf8(entry.requestId, MAX_PARAM_BYTES),
    actor: { type: cutUtf8(entry.actor.type, MAX_PARAM_BYTES), id: cutUtf8(entry.actor.id, MAX_PARAM_BYTES), name: cutUtf8(entry.actor.name, MAX_PARAM_BYTES) },
    data: { truncated: true, bytes: Buffer.byteLength(json, 'utf8'), sha256: createHash('sha256').update(json).digest('hex') },
  };
}

/** Octet-counting framing: `MSG-LEN SP SYSLOG-MSG`, the length in bytes (RFC 6587 §3.4.1, RFC 5425 §4.3). */
export function octetFrame(message: string): Buffer {
  const bytes = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${bytes.length} `, 'ascii'), bytes]);
}

/** One NDJSON line (with its `\n`), at most `maxBytes`: over it, `data` becomes its size and hash. */
export function ndjsonLine(entry: ForwardEntry, maxBytes = DEFAULT_MAX_LINE_BYTES): string {
  const line = lineSafeJson(entry);
  if (Buffer.byteLength(line, 'utf8') < maxBytes) return `${line}\n`;
  return `${lineSafeJson(truncatedEntry(entry))}\n`;
}

/** The CEF header's fixed fields: `CEF:0|Countersign|Countersign|<version>|`. */
export const CEF_VENDOR = 'Countersign';
export const CEF_PRODUCT = 'Countersign';

/**
 * A CEF header field (ArcSight CEF rules): `\` and `|` escaped with a backslash; a header may not
 * hold a line break, so CR and LF (and every other control character) become a space.
 */
export function cefHeaderField(value: string, maxBytes = 128): string {
  let out = '';
  let bytes = 0;
  for (const ch of wellFormed(value)) {
    const code = ch.codePointAt(0)!;
    const piece = ch === '\\' || ch === '|' ? `\\${ch}` : code < 0x20 || code === 0x7f || (code >= 0x80 && code <= 0x9f) || code === 0x2028 || code === 0x2029 ? ' ' : ch;
    const n = Buffer.byteLength(piece, 'utf8');
    if (bytes + n > maxBytes) break;
    out += piece;
    bytes += n;
  }
  return out;
}

/**
 * A CEF extension value: `\` and `=` escaped with a backslash, CR and LF written as the two
 * characters `\r` and `\n` (so a value never ends the line), other control characters shown as
 * their Unicode control pictures (C1 and U+2028/U+2029 as U+FFFD), lone surrogates as U+FFFD;
 * at most `maxBytes` once escaped, never cut inside an escape.
 */
export function cefExtensionValue(value: string, maxBytes: number): string {
  let out = '';
  let bytes = 0;
  for (const ch of wellFormed(value)) {
    const code = ch.codePointAt(0)!;
    let piece: string;
    if (ch === '\\' || ch === '=') piece = `\\${ch}`;
    else if (ch === '\n') piece = '\\n';
    else if (ch === '\r') piece = '\\r';
    else if (code < 0x20) piece = String.fromCharCode(0x2400 + code);
    else if (code === 0x7f) piece = '\u2421';
    else if ((code >= 0x80 && code <= 0x9f) || code === 0x2028 || code === 0x2029) piece = '\ufffd';
    else piece = ch;
    const n = Buffer.byteLength(piece, 'utf8');
    if (bytes + n > maxBytes) break;
    out += piece;
    bytes += n;
  }
  return out;
}

/** The longest CEF extension value other than `cs3` (the entry's data), in bytes once escaped. */
export const MAX_CEF_VALUE_BYTES = 256;

/**
 * One CEF event for an audit entry (README, "CEF field mappings"):
 * `CEF:0|Countersign|Countersign|<version>|<type>|<type>|<0–10>|rt=… externalId=<seq> act=<type> …`.
 * `cs3` holds the entry's data as JSON; when the event would pass `maxBytes` it holds
 * `{truncated, bytes, sha256}` instead (the same marker as the syslog body).
 */
export function cefMessage(entry: ForwardEntry, options: { version: string; hostname: string; maxBytes: number }): string {
  const header = `CEF:0|${CEF_VENDOR}|${CEF_PRODUCT}|${cefHeaderField(options.version, 32)}|${cefHeaderField(entry.type, 64)}|${cefHeaderField(entry.type, 64)}|${cefSeverityOf(entry.type)}|`;
  const at = Date.parse(entry.at);
  const data = entry.data as { reason?: unknown; description?: unknown } | null;
  const text = data && typeof data === 'object' ? (typeof data.reason === 'string' ? data.reason : typeof data.description === 'string' ? data.description : undefined) : undefined;
  // Long names and text give way before the bound does: first `msg` goes, then every value is cut to 64 bytes.
  const build = (valueMax: number, msgMax: number) => {
    const v = (s: string) => cefExtensionValue(s, valueMax);
    const fields: Array<[string, string]> = [
      ...(Number.isNaN(at) ? [] : ([['rt', String(at)]] as Array<[string, string]>)),
      ['externalId', String(entry.seq)],
      ['act', v(entry.type)],
      ['dvchost', v(options.hostname)],
      ['suid', v(entry.actor.id)],
      ['suser', v(entry.actor.name)],
      ['cs1Label', 'actorType'],
      ['cs1', v(entry.actor.type)],
      ['cs2Label', 'requestId'],
      ['cs2', v(entry.requestId ?? '')],
      ...(text === undefined || msgMax === 0 ? [] : ([['msg', cefExtensionValue(text, msgMax)]] as Array<[string, string]>)),
      ['cs3Label', 'data'],
    ];
    return `${header}${fields.map(([k, val]) => `${k}=${val}`).join(' ')} cs3=`;
  };
  const MARKER_BYTES = 140; // {"truncated":true,"bytes":…,"sha256":"<64 hex>"}
  let head = build(MAX_CEF_VALUE_BYTES, 1024);
  if (Buffer.byteLength(head, 'utf8') + MARKER_BYTES > options.maxBytes) head = build(MAX_CEF_VALUE_BYTES, 0);
  if (Buffer.byteLength(head, 'utf8') + MARKER_BYTES > options.maxBytes) head = build(64, 0);
  const budget = options.maxBytes - Buffer.byteLength(head, 'utf8');
  const json = JSON.stringify(entry.data) ?? 'null';
  const full = cefExtensionValue(lineSafeJson(entry.data), Number.MAX_SAFE_INTEGER);
  if (Buffer.byteLength(full, 'utf8') <= budget) return head + full;
  const marker = JSON.stringify({ truncated: true, bytes: Buffer.byteLength(json, 'utf8'), sha256: createHash('sha256').update(json).digest('hex') });
  return head + cefExtensionValue(marker, Math.max(0, budget));
}
