/**
 * SIEM forwarding (issue 20): audit and guard entries as RFC 5424 syslog over TLS and plain TCP
 * (octet counting) and as NDJSON over HTTPS, at least once, from a durable cursor.
 *
 * The wire formats are checked first as pure functions against a parser written from RFC 5424's
 * ABNF (test/support/siem-receivers.ts), with adversarial agent text. Then real server
 * processes forward to local receivers — a TLS syslog receiver and an HTTPS NDJSON receiver with
 * a self-signed certificate made in the test, and a plain TCP one — under load, while the
 * receivers refuse and drop connections and the server is killed (SIGKILL) and restarted: every
 * entry of the trail arrives, in seq order (a resend after a failure may repeat entries, never
 * skip one), each as the audit API shows it, and no secret, token or key is in any byte sent.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRedactor } from '@countersign/core';
import { resolveForwardingConfig, type HttpDestination, type SyslogDestination } from '../src/forwarding/config.ts';
import { HttpSender, SyslogSender } from '../src/forwarding/senders.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, SD_ID, cefExtensionValue, cefHeaderField, cefMessage, forwardEntry, ndjsonLine, octetFrame, sdParamValue, syslogMessage, type ForwardEntry } from '../src/forwarding/format.ts';
import type { AuditLogTable } from '../src/store/schema.ts';
import { postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { api, runCli, startServerProcess, type ServerProcess } from './support/server-process.ts';
import { OctetCountingSplitter, parseCef, parseSyslog, selfSignedCert, startNdjsonReceiver, startSyslogReceiver, type SyslogMessage } from './support/siem-receivers.ts';

const HOSTILE = [
  'plain',
  '"] [evil@1 admin="true"]',
  'back\\slash \\" \\] end\\',
  'line one\nline two\r\n<13>1 2024-01-01T00:00:00Z forged countersign - - - injected',
  '\u2028sep\u2029 \u0000nul \u007fdel \u0085nel \u001b[31mred',
  'lone \ud800 surrogate and pair 😀',
  `huge ${'x]'.repeat(50_000)}`,
];

/** What a parameter value reads back as: control pictures for C0 and DEL, U+FFFD for C1, line separators and lone surrogates. */
function shownAs(text: string): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && text.charCodeAt(i + 1) >= 0xdc00 && text.charCodeAt(i + 1) <= 0xdfff) {
      out += text.slice(i, i + 2);
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) out += '\ufffd';
    else if (c < 0x20) out += String.fromCharCode(0x2400 + c);
    else if (c === 0x7f) out += '\u2421';
    else if ((c >= 0x80 && c <= 0x9f) || c === 0x2028 || c === 0x2029) out += '\ufffd';
    else out += text[i];
  }
  return out;
}

function entry(over: Partial<ForwardEntry> = {}): ForwardEntry {
  return { seq: 7, at: '2025-03-01T12:00:00.000Z', type: 'created', requestId: 'req_1', actor: { type: 'agent', id: 'agt_1', name: 'bot' }, data: { description: 'x' }, ...over };
}

function param(m: SyslogMessage, name: string): string | undefined {
  return m.elements.find((e) => e.id === SD_ID)?.params.find(([k]) => k === name)?.[1];
}

describe('the wire formats', () => {
  it('escapes structured-data values as RFC 5424 requires, so hostile text parses back as one element with its own value (bounded)', () => {
    for (const text of HOSTILE) {
      const message = syslogMessage(entry({ actor: { type: 'agent', id: 'agt_1', name: text }, requestId: text, data: { description: text } }), { hostname: 'cs-1', procId: '42' });
      const parsed = parseSyslog(message);
      expect(parsed.elements.map((e) => e.id)).toEqual([SD_ID]);
      expect(parsed.pri).toBe(13 * 8 + 6);
      expect(parsed.version).toBe(1);
      expect(parsed.msgId).toBe('created');
      expect(parsed.bom).toBe(true);
      expect(Buffer.byteLength(message, 'utf8')).toBeLessThanOrEqual(DEFAULT_MAX_MESSAGE_BYTES);
      expect(message).not.toMatch(/[\n\r\u2028\u2029\u0000]/);
      const name = param(parsed, 'actorName')!;
      // The value read back is the original, with control characters shown as pictures (or U+FFFD), cut at 256 bytes.
      const shown = shownAs(text);
      if (Buffer.byteLength(text, 'utf8') <= 256) expect(name).toBe(shown);
      else {
        expect(name.endsWith('…')).toBe(true);
        expect(shown.startsWith(name.slice(0, -1))).toBe(true);
        expect(Buffer.byteLength(name, 'utf8')).toBeLessThanOrEqual(256);
      }
      const body = JSON.parse(parsed.msg) as ForwardEntry;
      if (param(parsed, 'truncated') === 'true') {
        expect(body.data).toMatchObject({ truncated: true });
        expect((body.data as { bytes: number }).bytes).toBeGreaterThan(DEFAULT_MAX_MESSAGE_BYTES);
      } else expect(body).toEqual(entry({ actor: { type: 'agent', id: 'agt_1', name: text }, requestId: text, data: { description: text } }));
    }
  });

  it('writes backslash, quote and bracket as the only backslash escapes, and shows control characters as pictures', () => {
    expect(sdParamValue('a"b\\c]d')).toBe('a\\"b\\\\c\\]d');
    expect(sdParamValue('one\ntwo\u0000\u007f\u0085\u2028')).toBe('one\u240atwo\u2400\u2421\ufffd\ufffd');
    expect(sdParamValue('\ud800x')).toBe('\ufffdx');
  });

  it('holds the message bound however small it is set, and says when the body was cut', () => {
    for (const maxBytes of [2048, 4096]) {
      const message = syslogMessage(entry({ actor: { type: 'agent'.repeat(100), id: 'i'.repeat(5000), name: 'n'.repeat(5000) }, data: { blob: 'z'.repeat(100_000) } }), { hostname: 'h'.repeat(1000), procId: 'p'.repeat(1000), maxBytes });
      expect(Buffer.byteLength(message, 'utf8')).toBeLessThanOrEqual(maxBytes);
      const parsed = parseSyslog(message);
      expect(param(parsed, 'truncated')).toBe('true');
      expect(parsed.hostname.length).toBe(255);
    }
    // Values that escape to more bytes than they hold (`]`, `"`, `\`: two; control characters: three as pictures).
    for (const nasty of [']'.repeat(5000), '"\\'.repeat(2500), '\n\u0001'.repeat(2500)]) {
      const e = entry({ type: 'x'.repeat(100), requestId: nasty, actor: { type: nasty, id: nasty, name: nasty }, data: { nasty } });
      const message = syslogMessage(e, { hostname: 'h'.repeat(1000), procId: 'p'.repeat(1000), maxBytes: 2048 });
      expect(Buffer.byteLength(message, 'utf8')).toBeLessThanOrEqual(2048);
      const parsed = parseSyslog(message);
      expect(parsed.elements.map((x) => [x.id, x.params.map(([k]) => k)])).toEqual([[SD_ID, ['seq', 'type', 'requestId', 'actorType', 'actorId', 'actorName', 'truncated']]]);
      expect(param(parsed, 'truncated')).toBe('true');
      for (const [, v] of parsed.elements[0]!.params) expect(Buffer.byteLength(v, 'utf8')).toBeLessThanOrEqual(256);
    }
    expect(sdParamValue(']'.repeat(300)).length).toBeLessThanOrEqual(256);
    expect(sdParamValue(']'.repeat(300))).toBe(`${'\\]'.repeat(126)}…`);
  });

  it('maps refusals and alerts to warning, outcomes to notice, the rest to informational', () => {
    const pri = (type: string) => parseSyslog(syslogMessage(entry({ type }), { hostname: 'h', procId: '1' })).pri;
    expect(pri('review_refused')).toBe(13 * 8 + 4);
    expect(pri('slicing_alert')).toBe(13 * 8 + 4);
    expect(pri('approved')).toBe(13 * 8 + 5);
    expect(pri('reviewed')).toBe(13 * 8 + 6);
  });

  it('frames by octet counting, so a stream split anywhere gives back exactly the messages', () => {
    const messages = HOSTILE.map((text, i) => syslogMessage(entry({ seq: i + 1, data: { text } }), { hostname: 'h', procId: '1' }));
    const stream = Buffer.concat(messages.map(octetFrame));
    for (const step of [1, 7, 1000, stream.length]) {
      const splitter = new OctetCountingSplitter();
      const out: string[] = [];
      for (let i = 0; i < stream.length; i += step) for (const f of splitter.push(stream.subarray(i, i + step))) out.push(f.toString('utf8'));
      expect(out).toEqual(messages);
      expect(splitter.pending).toBe(0);
    }
  });

  it('writes one NDJSON line per entry, never a raw line break, bounded', () => {
    for (const text of HOSTILE) {
      const line = ndjsonLine(entry({ data: { text } }), 8192);
      expect(line.endsWith('\n')).toBe(true);
      expect(line.slice(0, -1)).not.toMatch(/[\n\r\u2028\u2029]/);
      expect(Buffer.byteLength(line)).toBeLessThanOrEqual(8192);
      const back = JSON.parse(line) as ForwardEntry;
      if ((back.data as { truncated?: boolean }).truncated !== true) expect(back.data).toEqual({ text });
    }
  });

  it('sends the stored (already redacted) data as stored, never redacted again; a row that is not JSON goes out pattern-scrubbed', () => {
    const redactor = createRedactor({ tokenize: (kind, v) => `${kind.length}${v.length}`.padEnd(20, '0') });
    // What the writer stores: redacted once, a named field (email) and patterns in free text.
    const stored = redactor.redact({ email: 'bob@example.com', note: 'mail bob@example.com key sk_live_abcdefghijklmnop' });
    const row: AuditLogTable = { seq: 3, entry_id: 3, at: 0, type: 'created', request_id: null, actor_type: 'agent', actor_id: 'a', actor_name: 'b', data: JSON.stringify(stored) };
    const sent = forwardEntry(row, (text) => redactor.redact(text));
    expect(sent.data).toEqual(stored); // token for token: the email field's token is not tokenized again
    expect((sent.data as { email: string }).email).toBe(redactor.token('email', 'bob@example.com'));
    // A row a database writer left as text that is not JSON: its patterns are scrubbed on the way out.
    const raw = forwardEntry({ ...row, data: 'mail bob@example.com {' }, (text) => redactor.redact(text));
    expect(JSON.stringify(raw)).not.toContain('bob@example.com');
    expect(raw.data).toBe(`mail ${redactor.token('email', 'bob@example.com')} {`);
  });

  it('escapes CEF header fields (| and \\) and extension values (=, \\, CR, LF), so hostile text parses back as the same fields with its own value', () => {
    // What a CEF value reads back as: CR and LF themselves, other controls as pictures or U+FFFD.
    const cefShown = (text: string) => shownAs(text).replaceAll('\u240a', '\n').replaceAll('\u240d', '\r');
    for (const text of [...HOSTILE, 'a=b c=d', 'x cs1=forged act=approved', 'pipe | in | value', '\\=\\n', 'end with backslash \\']) {
      const e = entry({ type: 'reviewed', actor: { type: 'operator', id: text, name: text }, requestId: text, data: { reason: text, text } });
      for (const maxBytes of [2048, DEFAULT_MAX_MESSAGE_BYTES]) {
        const message = syslogMessage(e, { hostname: 'cs-1', procId: '42', format: 'cef', version: '0.1.0', maxBytes });
        expect(Buffer.byteLength(message, 'utf8')).toBeLessThanOrEqual(maxBytes);
        expect(message).not.toMatch(/[\n\r\u2028\u2029\u0000]/);
        const parsed = parseSyslog(message);
        expect(parsed.elements).toEqual([]);
        expect(parsed.bom).toBe(false);
        const cef = parseCef(parsed.msg);
        expect(cef.header).toEqual(['Countersign', 'Countersign', '0.1.0', 'reviewed', 'reviewed', '3']);
        // Exactly the keys the mapping names: nothing forged by the text.
        expect([...cef.extension.keys()].filter((k) => k !== 'msg')).toEqual(['rt', 'externalId', 'act', 'dvchost', 'suid', 'suser', 'cs1Label', 'cs1', 'cs2Label', 'cs2', 'cs3Label', 'cs3']);
        expect(cef.extension.get('externalId')).toBe('7');
        expect(cef.extension.get('act')).toBe('reviewed');
        expect(cef.extension.get('cs1')).toBe('operator');
        const shown = cefShown(text);
        const suser = cef.extension.get('suser')!;
        if (Buffer.byteLength(cefExtensionValue(text, Number.MAX_SAFE_INTEGER)) <= 64) expect(suser).toBe(shown);
        else expect(shown.startsWith(suser)).toBe(true);
        const data = JSON.parse(cef.extension.get('cs3')!) as { text?: string; truncated?: boolean };
        if (data.truncated !== true) expect(data).toEqual({ reason: text, text });
      }
    }
    expect(cefHeaderField('a|b\\c\nd')).toBe('a\\|b\\\\c d');
    expect(cefExtensionValue('a=b\\c\nd\re', 100)).toBe('a\\=b\\\\c\\nd\\re');
    // Never cut inside an escape.
    expect(cefExtensionValue('ab\\', 3)).toBe('ab');
    expect(cefMessage(entry({ data: { blob: 'z'.repeat(10_000) } }), { version: '1', hostname: 'h', maxBytes: 2048 })).toMatch(/cs3=\{"truncated":true,"bytes":10011,"sha256":"[0-9a-f]{64}"\}$/);
  });

  it('refuses destinations it cannot forward to safely, naming the variable', () => {
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_HTTP_URL: 'http://siem.example/in' }, '/')).toThrow(/COUNTERSIGN_FORWARD_HTTP_URL must be an https/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_HTTP_URL: 'https://u:p@siem.example/in' }, '/')).toThrow(/without credentials/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: 'udp://siem.example:514' }, '/')).toThrow(/COUNTERSIGN_FORWARD_SYSLOG_URL/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tcp://siem.example:514', COUNTERSIGN_FORWARD_SYSLOG_CA: '/etc/hosts' }, '/')).toThrow(/needs a tls/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_LEASE_MS: '5' }, '/')).toThrow(/COUNTERSIGN_FORWARD_LEASE_MS/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tcp://siem.example:514', COUNTERSIGN_FORWARD_SYSLOG_FORMAT: 'leef' }, '/')).toThrow(/COUNTERSIGN_FORWARD_SYSLOG_FORMAT must be rfc5424 or cef/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_FORMAT: 'cef' }, '/')).toThrow(/need COUNTERSIGN_FORWARD_SYSLOG_URL/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_HTTP_CA: '/etc/hosts' }, '/')).toThrow(/need COUNTERSIGN_FORWARD_HTTP_URL/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tls://siem.example', COUNTERSIGN_FORWARD_SYSLOG_CA: '/nonexistent/ca.pem' }, '/')).toThrow(/does not exist/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_BATCH: '0' }, '/')).toThrow(/COUNTERSIGN_FORWARD_BATCH must be an integer 1–1000/);
    expect(() => resolveForwardingConfig({ COUNTERSIGN_FORWARD_BATCH_BYTES: "1k" }, "/")).toThrow(/COUNTERSIGN_FORWARD_BATCH_BYTES must be an integer/);
    const config = resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tls://siem.example', COUNTERSIGN_FORWARD_HTTP_URL: 'https://siem.example/in' }, '/');
    expect(config.destinations.map((d) => d.id)).toEqual(['syslog:siem.example:6514', 'http:https://siem.example/in']);
  });
});

/** Hostile text the API accepts (it refuses NUL). */
const agentText = (i: number, max: number) => HOSTILE[i % HOSTILE.length]!.replaceAll('\u0000', '').slice(0, max);

interface AuditItem {
  seq: number;
  type: string;
  requestId: string | null;
}

async function fullTrail(url: string, token: string): Promise<AuditItem[]> {
  const out: AuditItem[] = [];
  let cursor: string | null = null;
  do {
    const page: { status: number; body: { items: AuditItem[]; nextCursor: string | null } } = await api(url, token, `/v1/audit?limit=1000${cursor ? `&cursor=${cursor}` : ''}`);
    expect(page.status).toBe(200);
    out.push(...page.body.items);
    cursor = page.body.nextCursor;
  } while (cursor);
  return out;
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 40_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Seqs as received: never a jump forward (a resend may go back), and every seq 1..n at least once. */
function expectAtLeastOnceInOrder(seqs: number[], n: number, what: string): void {
  expect(seqs[0]).toBe(1);
  for (let i = 1; i < seqs.length; i++) expect(seqs[i]!, `${what}: seq ${seqs[i]} after ${seqs[i - 1]} in ${seqs.join(',')}`).toBeLessThanOrEqual(seqs[i - 1]! + 1);
  expect(new Set(seqs).size).toBe(n);
  expect(Math.max(...seqs)).toBe(n);
}

interface StatusBody {
  head: number;
  destinations: Array<{ destination: string; metricsLabel: string; kind: string; configured: boolean; cursor: number; head: number; lag: number; state: string; leasedBy: string | null; lastError: string | null; lastErrorAt: string | null; deliveredAt: string | null }>;
}

async function forwardingStatus(url: string, token: string): Promise<StatusBody> {
  const res = await api<StatusBody>(url, token, '/v1/forwarding');
  expect(res.status).toBe(200);
  return res.body;
}

describe.each([
  ['PostgreSQL', postgresDatabase],
  ['SQLite', sqliteDatabase],
] as const)('forwarding from a real server (%s), killed and restarted mid-stream', (_name, makeDatabase) => {
  const cert = selfSignedCert();
  const httpToken = `siem_${randomBytes(16).toString('hex')}`;
  let database: TestDatabase;
  let syslog: Awaited<ReturnType<typeof startSyslogReceiver>>;
  let ndjson: Awaited<ReturnType<typeof startNdjsonReceiver>>;
  let server: ServerProcess | undefined;
  let env: Record<string, string>;

  beforeAll(async () => {
    database = makeDatabase();
    syslog = await startSyslogReceiver(cert);
    ndjson = await startNdjsonReceiver(cert, httpToken);
    env = {
      COUNTERSIGN_FORWARD_SYSLOG_URL: `tls://127.0.0.1:${syslog.port}`,
      COUNTERSIGN_FORWARD_SYSLOG_CA: cert.certPath,
      COUNTERSIGN_FORWARD_HTTP_URL: ndjson.url,
      COUNTERSIGN_FORWARD_HTTP_CA: cert.certPath,
      COUNTERSIGN_FORWARD_HTTP_TOKEN: httpToken,
      COUNTERSIGN_FORWARD_BATCH: '7',
      COUNTERSIGN_FORWARD_POLL_MS: '100',
      COUNTERSIGN_FORWARD_LEASE_MS: '2000',
      COUNTERSIGN_REVIEWER_LIMITS: 'off',
    };
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await syslog?.close();
    await ndjson?.close();
    await database?.drop();
  }, 60_000);

  it('delivers every entry at least once, in seq order, as the audit API shows it, with no secret in any byte', async () => {
    server = await startServerProcess(database.url, env);
    const { adminToken, agentKey } = server.bootstrap!;
    const secretText = 'reach ops@example.com with sk_live_0123456789abcdef and card 4111 1111 1111 1111';
    const acknowledged: string[] = [];
    let running = true;
    let restarting = false;
    let restarts = 0;
    let firstStderr = () => '';
    const loadErrors: string[] = [];
    // Two agents' worth of load, creating (some held for review, then rejected) through whichever process is up.
    const load = async (worker: number) => {
      for (let i = 0; running; i++) {
        const url = server!.url;
        const generation = restarts;
        try {
          const created = await api<{ id: string; status: string }>(url, agentKey, '/v1/requests', {
            body: { action: i % 3 === 0 ? 'delete_data' : 'read_ticket', args: { n: i, worker }, confidence: 0.9, description: i % 5 === 0 ? `${secretText} ${agentText(i, 500)}` : `item ${i}` },
          });
          if (created.status !== 201 && created.status !== 200) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
          acknowledged.push(created.body.id);
          if (created.body.status === 'pending') {
            const rejected = await api(url, adminToken, `/v1/requests/${created.body.id}/reviews`, { body: { verdict: 'reject', reason: `no ${i % 2 === 0 ? secretText : ''} ${agentText(i, 200)}` } });
            if (rejected.status !== 200 && rejected.status !== 201) throw new Error(`review answered ${rejected.status}: ${JSON.stringify(rejected.body)}`);
          }
        } catch (err) {
          if (!restarting && generation === restarts) loadErrors.push((err as Error).message);
          // else: the process was killed under this call: not acknowledged, not counted
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    };
    const workers = [load(0), load(1)];
    const received = () => new Set(ndjson.batches.flatMap((b) => b.lines.map((l) => (l as { seq: number }).seq))).size;
    await until('the first batches', () => received() >= 20 && syslog.connections.some((c) => c.messages.length > 0));
    // The receivers misbehave: the HTTPS one refuses the next batches, the syslog one drops its connections.
    ndjson.failNext(3);
    syslog.dropConnections();
    await until('more entries', () => received() >= 60);
    // SIGKILL mid-stream, then a new process on the same database continues from the stored cursors.
    restarting = true;
    const first = server;
    firstStderr = () => first.stderr();
    await server.kill();
    server = await startServerProcess(database.url, env);
    restarts++;
    restarting = false;
    const before = acknowledged.length;
    await until('load through the new process', () => acknowledged.length >= before + 30);
    running = false;
    await Promise.all(workers);
    expect(loadErrors).toEqual([]);
    const trail = await fullTrail(server.url, adminToken);
    const n = trail.length;
    expect(trail.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const syslogReceived = () => new Set(syslog.connections.flatMap((c) => c.messages.map((m) => Number(param(m, 'seq'))))).size;
    await until('every entry at both receivers', () => received() >= n && syslogReceived() >= n, 60_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${n} entries, NDJSON ${received()}, syslog ${syslogReceived()}; server: ${server!.stderr()}`);
    });

    // NDJSON: at least once, in order; each line exactly the audit API's entry.
    const httpSeqs = ndjson.batches.flatMap((b) => b.lines.map((l) => (l as { seq: number }).seq));
    expectAtLeastOnceInOrder(httpSeqs, n, 'NDJSON');
    expect(ndjson.refused).toBe(3);
    expect(ndjson.errors).toEqual([]);
    const bySeq = new Map(ndjson.batches.flatMap((b) => b.lines.map((l) => [(l as { seq: number }).seq, l] as const)));
    expect(trail.map((e) => bySeq.get(e.seq))).toEqual(trail);
    for (const b of ndjson.batches) expect(b.headers['content-type']).toBe('application/x-ndjson');

    // Syslog over TLS: every frame a valid RFC 5424 message; within each connection seqs strictly increase.
    expect(syslog.errors).toEqual([]);
    expect(syslog.connections.length).toBeGreaterThanOrEqual(3); // first, after the drop, after the restart
    const syslogSeqs = syslog.connections.flatMap((c) => c.messages.map((m) => Number(param(m, 'seq'))));
    expectAtLeastOnceInOrder(syslogSeqs, n, `syslog (${syslog.connections.map((c) => c.messages.length).join('+')})`);
    for (const c of syslog.connections) {
      const seqs = c.messages.map((m) => Number(param(m, 'seq')));
      for (let i = 1; i < seqs.length; i++) expect(seqs[i], `${seqs.join(',')}: first: ${firstStderr()} second: ${server.stderr()}`).toBe(seqs[i - 1]! + 1);
    }
    const firstOf = new Map<number, SyslogMessage>();
    for (const c of syslog.connections) for (const m of c.messages) if (!firstOf.has(Number(param(m, 'seq')))) firstOf.set(Number(param(m, 'seq')), m);
    for (const e of trail) {
      const m = firstOf.get(e.seq)!;
      expect(m.msgId).toBe(e.type);
      expect(param(m, 'type')).toBe(e.type);
      expect(m.elements.length).toBe(1);
      if (param(m, 'truncated') !== 'true') expect(JSON.parse(m.msg)).toEqual(e);
    }

    // Every acknowledged create reached the SIEM as its `created` entry.
    const createdIds = new Set(trail.filter((e) => e.type === 'created').map((e) => e.requestId));
    for (const id of acknowledged) expect(createdIds.has(id)).toBe(true);
    expect(trail.filter((e) => e.type === 'rejected').length).toBeGreaterThan(0);

    // No secret in any byte sent: the redacted values, the credentials, the HTTP token.
    const everything = ndjson.batches.map((b) => b.body).join('') + syslog.connections.flatMap((c) => c.frames.map((f) => f.toString('utf8'))).join('');
    for (const secret of ['ops@example.com', 'sk_live_0123456789abcdef', '4111 1111 1111 1111', adminToken, agentKey, httpToken]) expect(everything).not.toContain(secret);
    expect(everything).toContain('[email:');
    expect(everything).toContain('[secret:');
    // The request path never waited on a refusing receiver: creates kept being acknowledged while it refused.
    expect(acknowledged.length).toBeGreaterThan(60);

    // The status: both destinations catch up to the trail's head (syslog once its confirmation
    // window has passed), and the HTTPS receiver's refusals are kept as its last error.
    const httpId = `http:${new URL(ndjson.url).origin}/…`; // the path is not shown
    const syslogId = `syslog:127.0.0.1:${syslog.port}`;
    await until('both cursors at the head', async () => (await forwardingStatus(server!.url, adminToken)).destinations.every((d) => d.lag === 0));
    const status = await forwardingStatus(server.url, adminToken);
    expect(status.head).toBe(n);
    expect(status.destinations.map((d) => [d.destination, d.kind, d.configured, d.cursor, d.state])).toEqual([
      [syslogId, 'syslog', true, n, 'ok'],
      [httpId, 'http', true, n, 'ok'],
    ]);
    const httpStatus = status.destinations[1]!;
    expect(httpStatus.lastError).toBe('the receiver answered 503');
    expect(Date.parse(httpStatus.deliveredAt!)).toBeGreaterThan(Date.parse(httpStatus.lastErrorAt!));
    expect(status.destinations.every((d) => d.leasedBy !== null)).toBe(true);
    // Prometheus has the same lag and state, per destination.
    // Labelled by kind and a keyed hash (the status maps them), never by address.
    const [syslogLabel, httpLabel] = status.destinations.map((d) => d.metricsLabel);
    expect(syslogLabel).toMatch(/^syslog-[0-9a-f]{12}$/);
    expect(httpLabel).toMatch(/^http-[0-9a-f]{12}$/);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toContain(`countersign_forward_lag{destination="${httpLabel}"} 0`);
    expect(metrics).toContain(`countersign_forward_lag{destination="${syslogLabel}"} 0`);
    expect(metrics).toContain(`countersign_forward_failing{destination="${httpLabel}"} 0`);
    expect(metrics).not.toMatch(/countersign_forward_\w+\{destination="[^"]*127\.0\.0\.1/);
    // Agents may not read it; the CLI shows the same table.
    expect((await api(server.url, agentKey, '/v1/forwarding')).status).toBe(403);
    const cli = await runCli(['audit', 'forwarding'], { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: adminToken });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain(httpId);
    expect(cli.stdout).toMatch(new RegExp(`${syslogId.replaceAll('.', '\\.')}\\s+ok\\s+${n}\\s+0\\s`));

    // The audit trail still verifies.
    const verified = await runCli(['audit', 'verify'], { COUNTERSIGN_URL: server.url, COUNTERSIGN_TOKEN: adminToken });
    expect(verified.code, verified.stderr).toBe(0);
  }, 150_000);
});

/** A syslog message's seq: its structured data's, or (CEF) the event's externalId. */
function seqOf(m: SyslogMessage): number {
  return Number(param(m, 'seq') ?? parseCef(m.msg).extension.get('externalId'));
}

describe('CEF over plain TCP beside an HTTPS destination that is down (SQLite)', () => {
  const cert = selfSignedCert();
  let database: TestDatabase;
  let syslog: Awaited<ReturnType<typeof startSyslogReceiver>>;
  let ndjson: Awaited<ReturnType<typeof startNdjsonReceiver>>;
  let server: ServerProcess | undefined;
  beforeAll(async () => {
    database = sqliteDatabase();
    syslog = await startSyslogReceiver();
    ndjson = await startNdjsonReceiver(cert, 'tok');
  });
  afterAll(async () => {
    await server?.stop();
    await syslog?.close();
    await ndjson?.close();
    await database?.drop();
  }, 30_000);

  it('sends every entry once over one connection while the other destination fails, reports the failing one, and a clean stop gives the lease up', async () => {
    const env = {
      COUNTERSIGN_FORWARD_SYSLOG_URL: `tcp://127.0.0.1:${syslog.port}`,
      COUNTERSIGN_FORWARD_SYSLOG_FORMAT: 'cef',
      COUNTERSIGN_FORWARD_HTTP_URL: ndjson.url,
      COUNTERSIGN_FORWARD_HTTP_CA: cert.certPath,
      COUNTERSIGN_FORWARD_HTTP_TOKEN: 'tok',
      COUNTERSIGN_FORWARD_POLL_MS: '100',
      COUNTERSIGN_FORWARD_LEASE_MS: '60000',
      COUNTERSIGN_FORWARD_BATCH_BYTES: '4096',
    };
    ndjson.failNext(1_000_000, 500); // the HTTPS SIEM is down throughout the first run
    server = await startServerProcess(database.url, env);
    const { adminToken, agentKey } = server.bootstrap!;
    for (let i = 0; i < 10; i++) {
      const description = `${agentText(i, 300)} x cs1=forged act=approved | \\`;
      expect((await api(server.url, agentKey, '/v1/requests', { body: { action: 'read_ticket', args: { i }, confidence: 0.9, description } })).status).toBe(201);
    }
    let trail = await fullTrail(server.url, adminToken);
    let n = trail.length;
    const seqs = () => syslog.connections.flatMap((c) => c.messages.map(seqOf));
    await until('every entry', () => seqs().length >= n);
    expect(seqs()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // Each message a CEF event with exactly the mapped keys; its cs3 the entry's data.
    for (const m of syslog.connections.flatMap((c) => c.messages)) {
      const cef = parseCef(m.msg);
      const e = trail[seqOf(m) - 1]!;
      expect(cef.header.slice(3, 5)).toEqual([e.type, e.type]);
      expect(cef.extension.get('act')).toBe(e.type);
      expect(cef.extension.get('cs2')).toBe(e.requestId ?? '');
      expect([...cef.extension.keys()].filter((k) => k !== 'msg')).toEqual(['rt', 'externalId', 'act', 'dvchost', 'suid', 'suser', 'cs1Label', 'cs1', 'cs2Label', 'cs2', 'cs3Label', 'cs3']);
      expect(JSON.parse(cef.extension.get('cs3')!)).toEqual((e as unknown as { data: unknown }).data);
    }
    // The HTTPS destination is failing: it shows, with its lag, and it held nothing else up.
    await until('the failure recorded', async () => (await forwardingStatus(server!.url, adminToken)).destinations[1]?.state === 'failing');
    const down = (await forwardingStatus(server.url, adminToken)).destinations[1]!;
    expect(down).toMatchObject({ kind: 'http', cursor: 0, state: 'failing', lastError: 'the receiver answered 500' });
    expect(down.lag).toBeGreaterThanOrEqual(n);
    expect(down.destination).toBe(`http:${new URL(ndjson.url).origin}/…`);
    expect(await (await fetch(`${server.url}/metrics`)).text()).toContain(`countersign_forward_failing{destination="${down.metricsLabel}"} 1`);
    expect(ndjson.batches).toEqual([]);
    // A clean stop releases the lease: the next start forwards at once, although the lease is a minute long.
    await server.stop();
    ndjson.failNext(0);
    server = await startServerProcess(database.url, env);
    expect((await api(server.url, agentKey, '/v1/requests', { body: { action: 'read_ticket', args: { i: 'after' }, confidence: 0.9 } })).status).toBe(201);
    trail = await fullTrail(server.url, adminToken);
    n = trail.length;
    await until('the entries after the restart', () => new Set(seqs()).size >= n, 20_000);
    expect(seqs()).toEqual(Array.from({ length: n }, (_, i) => i + 1)); // nothing sent twice after a clean stop
    expect(syslog.errors).toEqual([]);
    // The HTTPS SIEM, up again, gets the whole trail from its own cursor (0), once.
    await until('the HTTPS backlog', () => ndjson.batches.flatMap((b) => b.lines).length >= n, 20_000);
    expect(ndjson.batches.flatMap((b) => b.lines.map((l) => (l as { seq: number }).seq))).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    // The backlog went out in POSTs bounded by COUNTERSIGN_FORWARD_BATCH_BYTES, not in one.
    expect(ndjson.batches.length).toBeGreaterThan(1);
    for (const b of ndjson.batches) expect(Buffer.byteLength(b.body)).toBeLessThanOrEqual(4096);
    await until('both at the head', async () => (await forwardingStatus(server!.url, adminToken)).destinations.every((d) => d.lag === 0 && d.state === 'ok'));
  }, 60_000);
});

describe('the wires fail closed', () => {
  it('refuses a TLS syslog receiver or HTTPS receiver whose certificate the configured CA did not sign, and sends nothing', async () => {
    const good = selfSignedCert();
    const other = selfSignedCert();
    const syslog = await startSyslogReceiver(good);
    const ndjson = await startNdjsonReceiver(good, 'tok');
    try {
      const wrongCa = resolveForwardingConfig(
        { COUNTERSIGN_FORWARD_SYSLOG_URL: `tls://127.0.0.1:${syslog.port}`, COUNTERSIGN_FORWARD_SYSLOG_CA: other.certPath, COUNTERSIGN_FORWARD_HTTP_URL: ndjson.url, COUNTERSIGN_FORWARD_HTTP_CA: other.certPath },
        '/',
      );
      const [s, h] = wrongCa.destinations as [SyslogDestination, HttpDestination];
      await expect(new SyslogSender(s, 0).open()).rejects.toThrow(/self[- ]signed|certificate/i);
      await expect(new HttpSender(h).send(Buffer.from('{}\n'), { first: 1, last: 1 })).rejects.toThrow(/self[- ]signed|certificate/i);
      // No CA given: the system's store, which does not hold a certificate made a moment ago.
      const systemCa = resolveForwardingConfig({ COUNTERSIGN_FORWARD_HTTP_URL: ndjson.url }, '/').destinations[0] as HttpDestination;
      await expect(new HttpSender(systemCa).send(Buffer.from('{}\n'), { first: 1, last: 1 })).rejects.toThrow(/self[- ]signed|certificate/i);
      // The right CA works (the control).
      const right = resolveForwardingConfig({ COUNTERSIGN_FORWARD_SYSLOG_URL: `tls://127.0.0.1:${syslog.port}`, COUNTERSIGN_FORWARD_SYSLOG_CA: good.certPath }, '/').destinations[0] as SyslogDestination;
      const sender = new SyslogSender(right, 0);
      expect(await sender.open()).toBe(1);
      sender.close();
      expect(ndjson.batches).toEqual([]);
      expect(syslog.connections.every((c) => c.frames.length === 0)).toBe(true);
    } finally {
      await syslog.close();
      await ndjson.close();
    }
  });
});

describe('a server with a forwarding setting it cannot use', () => {
  it('refuses to start, naming the variable, and leaves the database untouched', async () => {
    const database = sqliteDatabase();
    try {
      for (const [env, message] of [
        [{ COUNTERSIGN_FORWARD_SYSLOG_URL: 'udp://127.0.0.1:514' }, 'COUNTERSIGN_FORWARD_SYSLOG_URL must be tls://host:port or tcp://host:port'],
        [{ COUNTERSIGN_FORWARD_HTTP_URL: 'http://127.0.0.1/ingest' }, 'COUNTERSIGN_FORWARD_HTTP_URL must be an https:// URL'],
        [{ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tls://127.0.0.1', COUNTERSIGN_FORWARD_SYSLOG_CA: '/nonexistent/ca.pem' }, 'COUNTERSIGN_FORWARD_SYSLOG_CA: /nonexistent/ca.pem does not exist'],
      ] as const) {
        const run = await runCli(['serve', '--port', '0'], { COUNTERSIGN_DATABASE_URL: database.url, ...env });
        expect(run.code).not.toBe(0);
        expect(run.stderr).toContain(message);
      }
      expect(existsSync(database.url.replace(/^sqlite:/, ''))).toBe(false);
    } finally {
      await database.drop();
    }
  }, 60_000);
});

describe('two server processes on one PostgreSQL database', () => {
  const cert = selfSignedCert();
  let database: TestDatabase;
  let ndjson: Awaited<ReturnType<typeof startNdjsonReceiver>>;
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    database = postgresDatabase();
    ndjson = await startNdjsonReceiver(cert, 'tok');
  });
  afterAll(async () => {
    for (const s of servers) await s.stop().catch(() => {});
    await ndjson?.close();
    await database?.drop();
  }, 60_000);

  it('forward through one lease holder (each entry once), and the other takes over when the holder is killed, repeating at most one batch', async () => {
    const env = {
      COUNTERSIGN_FORWARD_HTTP_URL: ndjson.url,
      COUNTERSIGN_FORWARD_HTTP_CA: cert.certPath,
      COUNTERSIGN_FORWARD_HTTP_TOKEN: 'tok',
      COUNTERSIGN_FORWARD_BATCH: '5',
      COUNTERSIGN_FORWARD_POLL_MS: '100',
      COUNTERSIGN_FORWARD_LEASE_MS: '6000',
      COUNTERSIGN_REVIEWER_LIMITS: 'off',
    };
    servers.push(await startServerProcess(database.url, env));
    servers.push(await startServerProcess(database.url, env));
    const { adminToken, agentKey } = servers[0]!.bootstrap!;
    const create = async (s: ServerProcess, i: number) => expect((await api(s.url, agentKey, '/v1/requests', { body: { action: 'read_ticket', args: { i }, confidence: 0.9 } })).status).toBe(201);
    for (let i = 0; i < 20; i++) await Promise.all(servers.map((s, k) => create(s, i * 2 + k)));
    let n = (await fullTrail(servers[0]!.url, adminToken)).length;
    const seqs = () => ndjson.batches.flatMap((b) => b.lines.map((l) => (l as { seq: number }).seq));
    await until('every entry', () => new Set(seqs()).size >= n);
    // Both servers forward, but only the lease holder sends: every entry exactly once, in order.
    expect(seqs()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    const status = await forwardingStatus(servers[1]!.url, adminToken);
    const holder = servers.find((s) => status.destinations[0]!.leasedBy?.includes(`:${s.child.pid}:`));
    expect(holder).toBeDefined();
    // SIGKILL the holder; the other server takes the lease once it lapses and continues from the stored cursor.
    await holder!.kill();
    const survivor = servers.find((s) => s !== holder)!;
    for (let i = 0; i < 10; i++) await create(survivor, 100 + i);
    n = (await fullTrail(survivor.url, adminToken)).length;
    await until('every entry after the takeover', () => new Set(seqs()).size >= n, 30_000);
    const all = seqs();
    expect(new Set(all).size).toBe(n);
    expect(all.length - n).toBeLessThanOrEqual(5); // at most the batch in flight when the holder died
    expect((await forwardingStatus(survivor.url, adminToken)).destinations[0]!.leasedBy).toContain(`:${survivor.child.pid}:`);
    expect(ndjson.errors).toEqual([]);
  }, 90_000);
});
