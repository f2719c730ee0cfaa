/**
 * Local stand-ins for a SIEM, built from the wire formats: a syslog receiver (RFC 5425 over TLS,
 * or plain TCP) that splits the octet-counted stream (RFC 6587 §3.4.1) and parses each message
 * by RFC 5424's ABNF, and an HTTPS receiver of newline-delimited JSON batches. Certificates are
 * made per test with the `openssl` command (a self-signed certificate for 127.0.0.1).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createTcpServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer } from 'node:tls';

export interface SelfSigned {
  certPath: string;
  keyPath: string;
  cert: Buffer;
  key: Buffer;
}

export function selfSignedCert(): SelfSigned {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-siem-cert-'));
  const keyPath = join(dir, 'key.pem');
  const certPath = join(dir, 'cert.pem');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ], { stdio: 'ignore' });
  return { certPath, keyPath, cert: readFileSync(certPath), key: readFileSync(keyPath) };
}

export interface SyslogMessage {
  pri: number;
  version: number;
  timestamp: string;
  hostname: string;
  appName: string;
  procId: string;
  msgId: string;
  /** Every SD-ELEMENT, in order, its parameters unescaped. */
  elements: Array<{ id: string; params: Array<[string, string]> }>;
  /** MSG without its BOM. */
  msg: string;
  bom: boolean;
}

/** Parses one SYSLOG-MSG by RFC 5424 §6's ABNF; throws on anything that does not follow it. */
export function parseSyslog(text: string): SyslogMessage {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`not RFC 5424 at ${i}: ${why}: ${JSON.stringify(text.slice(0, 200))}`);
  };
  const token = () => {
    const start = i;
    while (i < text.length && text[i] !== ' ') {
      const c = text.charCodeAt(i);
      if (c < 33 || c > 126) fail('header field outside PRINTUSASCII');
      i++;
    }
    if (i === start) fail('empty header field');
    return text.slice(start, i);
  };
  const sp = () => (text[i] === ' ' ? i++ : fail('SP expected'));
  if (text[i++] !== '<') fail('PRI');
  const close = text.indexOf('>', i);
  const pri = Number(text.slice(i, close));
  if (close < 0 || !/^\d{1,3}$/.test(text.slice(i, close)) || pri > 191) fail('PRIVAL');
  i = close + 1;
  const version = Number(token());
  sp();
  const timestamp = token();
  sp();
  const hostname = token();
  sp();
  const appName = token();
  sp();
  const procId = token();
  sp();
  const msgId = token();
  sp();
  if (hostname.length > 255 || appName.length > 48 || procId.length > 128 || msgId.length > 32) fail('header field too long');
  const elements: SyslogMessage['elements'] = [];
  if (text[i] === '-') i++;
  else {
    while (text[i] === '[') {
      i++;
      const id = sdName();
      const params: Array<[string, string]> = [];
      while (text[i] === ' ') {
        i++;
        const name = sdName();
        if (text[i++] !== '=' || text[i++] !== '"') fail('PARAM-VALUE must be quoted');
        let value = '';
        for (;;) {
          if (i >= text.length) fail('unterminated PARAM-VALUE');
          const c = text[i++]!;
          if (c === '"') break;
          if (c === ']') fail('unescaped ] in PARAM-VALUE');
          if (c === '\\' && (text[i] === '"' || text[i] === '\\' || text[i] === ']')) value += text[i++];
          else value += c;
        }
        params.push([name, value]);
      }
      if (text[i++] !== ']') fail('SD-ELEMENT not closed');
      elements.push({ id, params });
    }
    if (elements.length === 0) fail('STRUCTURED-DATA');
  }
  let msg = '';
  let bom = false;
  if (i < text.length) {
    sp();
    msg = text.slice(i);
    if (msg.startsWith('\uFEFF')) {
      bom = true;
      msg = msg.slice(1);
    }
  }
  return { pri, version, timestamp, hostname, appName, procId, msgId, elements, msg, bom };

  function sdName(): string {
    const start = i;
    while (i < text.length && !'= ]"'.includes(text[i]!)) {
      const c = text.charCodeAt(i);
      if (c < 33 || c > 126) fail('SD-NAME outside PRINTUSASCII');
      i++;
    }
    if (i === start || i - start > 32) fail('SD-NAME length');
    return text.slice(start, i);
  }
}

/** Splits an octet-counted stream as it arrives in arbitrary chunks: `MSG-LEN SP SYSLOG-MSG`… */
export class OctetCountingSplitter {
  #buffer = Buffer.alloc(0);
  push(chunk: Buffer): Buffer[] {
    this.#buffer = Buffer.concat([this.#buffer, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const space = this.#buffer.indexOf(0x20);
      if (space < 0) {
        if (this.#buffer.length > 10) throw new Error('MSG-LEN too long');
        break;
      }
      const digits = this.#buffer.subarray(0, space).toString('ascii');
      if (!/^[1-9]\d{0,9}$/.test(digits)) throw new Error(`bad MSG-LEN ${JSON.stringify(digits)}`);
      const length = Number(digits);
      if (this.#buffer.length < space + 1 + length) break;
      out.push(this.#buffer.subarray(space + 1, space + 1 + length));
      this.#buffer = this.#buffer.subarray(space + 1 + length);
    }
    return out;
  }
  get pending(): number {
    return this.#buffer.length;
  }
}

export interface SyslogReceiver {
  port: number;
  /** Every message received, per connection, in arrival order. */
  connections: Array<{ frames: Buffer[]; messages: SyslogMessage[] }>;
  /** Framing or parse failures (must stay empty). */
  errors: string[];
  /** Drops every open connection (the sender must reconnect and send again what it had not confirmed). */
  dropConnections(): void;
  close(): Promise<void>;
}

export async function startSyslogReceiver(tls?: SelfSigned): Promise<SyslogReceiver> {
  const connections: SyslogReceiver['connections'] = [];
  const errors: string[] = [];
  const sockets = new Set<Socket>();
  const onSocket = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const conn = { frames: [] as Buffer[], messages: [] as SyslogMessage[] };
    connections.push(conn);
    const splitter = new OctetCountingSplitter();
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const frame of splitter.push(chunk)) {
          conn.frames.push(frame);
          conn.messages.push(parseSyslog(frame.toString('utf8')));
        }
      } catch (err) {
        errors.push((err as Error).message);
      }
    });
  };
  const server: Server = tls ? createTlsServer({ cert: tls.cert, key: tls.key }, onSocket) : createTcpServer(onSocket);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    port: (server.address() as AddressInfo).port,
    connections,
    errors,
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

export interface NdjsonReceiver {
  url: string;
  /** Accepted batches, in arrival order: each line parsed, and the raw body. */
  batches: Array<{ lines: unknown[]; body: string; headers: Record<string, string | string[] | undefined> }>;
  /** Bodies refused because `failNext` was set (they must be sent again). */
  refused: number;
  /** The next `n` POSTs get this status (default 503) and are not counted as received. */
  failNext(n: number, status?: number): void;
  errors: string[];
  close(): Promise<void>;
}

export async function startNdjsonReceiver(cert: SelfSigned, token: string): Promise<NdjsonReceiver> {
  const state = { fail: 0, status: 503, refused: 0 };
  const batches: NdjsonReceiver['batches'] = [];
  const errors: string[] = [];
  const server: HttpsServer = createHttpsServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.headers.authorization !== `Bearer ${token}`) {
        errors.push(`bad authorization: ${String(req.headers.authorization)}`);
        res.writeHead(401).end();
        return;
      }
      if (state.fail > 0) {
        state.fail--;
        state.refused++;
        res.writeHead(state.status).end();
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      try {
        if (!body.endsWith('\n')) throw new Error('a batch must end with a newline');
        const lines = body.slice(0, -1).split('\n').map((l) => JSON.parse(l) as unknown);
        batches.push({ lines, body, headers: req.headers });
        res.writeHead(202).end();
      } catch (err) {
        errors.push((err as Error).message);
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/ingest`,
    batches,
    get refused() {
      return state.refused;
    },
    failNext(n, status = 503) {
      state.fail = n;
      state.status = status;
    },
    errors,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
    },
  };
}

export interface CefEvent {
  /** The seven header fields after `CEF:0`, unescaped. */
  header: string[];
  /** Extension key → value, unescaped (`\\n` → newline, `\\=` → `=`, `\\\\` → `\\`). */
  extension: Map<string, string>;
}

/**
 * Parses one CEF event by the ArcSight rules, strictly: a header of seven `|`-terminated fields
 * (`\\|` and `\\\\` the only escapes), then `key=value` pairs, a value running to the space before
 * the next unescaped `key=`. An unescaped `=` inside a value, a raw line break, or an unknown
 * escape fails (those are what a forged field would need).
 */
export function parseCef(text: string): CefEvent {
  if (!text.startsWith('CEF:')) throw new Error(`not CEF: ${JSON.stringify(text.slice(0, 80))}`);
  if (/[\r\n]/.test(text)) throw new Error('a raw line break in a CEF event');
  const header: string[] = [];
  let field = '';
  let i = 4;
  while (header.length < 7) {
    if (i >= text.length) throw new Error('CEF header has fewer than seven fields');
    const c = text[i++]!;
    if (c === '\\') {
      const next = text[i++];
      if (next !== '|' && next !== '\\') throw new Error(`bad escape \\${next} in a CEF header`);
      field += next;
    } else if (c === '|') {
      header.push(field);
      field = '';
    } else field += c;
  }
  const version = header.shift();
  if (version !== '0') throw new Error('CEF version must be 0');
  const extension = new Map<string, string>();
  const rest = text.slice(i);
  // Split at unescaped `=`: each one ends a key (the word before it), so the key list is fixed by where they are.
  const equals: number[] = [];
  for (let j = 0; j < rest.length; j++) {
    if (rest[j] === '\\') j++;
    else if (rest[j] === '=') equals.push(j);
  }
  const keyStart = (eq: number) => {
    const space = rest.lastIndexOf(' ', eq);
    const key = rest.slice(space + 1, eq);
    if (!/^[A-Za-z0-9_]+$/.test(key)) throw new Error(`bad CEF key ${JSON.stringify(key)}`);
    return space + 1;
  };
  for (let k = 0; k < equals.length; k++) {
    const eq = equals[k]!;
    const start = keyStart(eq);
    const end = k + 1 < equals.length ? keyStart(equals[k + 1]!) - 1 : rest.length;
    const key = rest.slice(start, eq);
    const raw = rest.slice(eq + 1, end);
    let value = '';
    for (let j = 0; j < raw.length; j++) {
      if (raw[j] !== '\\') {
        value += raw[j];
        continue;
      }
      const next = raw[++j];
      if (next === 'n') value += '\n';
      else if (next === 'r') value += '\r';
      else if (next === '=' || next === '\\') value += next;
      else throw new Error(`bad escape \\${next} in CEF value ${key}`);
    }
    if (extension.has(key)) throw new Error(`CEF key ${key} twice`);
    extension.set(key, value);
  }
  return { header, extension };
}
