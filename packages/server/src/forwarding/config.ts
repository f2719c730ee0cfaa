/**
 * SIEM forwarding settings, resolved once with the rest of the server config (config.ts passes
 * the environment in; this module never reads `process.env`). They are server settings, not
 * policy: destinations carry credentials and CA files, which belong to the deployment, and a
 * policy reload must not be able to point the audit stream somewhere else.
 *
 *   COUNTERSIGN_FORWARD_SYSLOG_URL=tls://siem.example:6514   (or tcp://… for plain TCP)
 *   COUNTERSIGN_FORWARD_SYSLOG_CA=/etc/countersign/siem-ca.pem
 *   COUNTERSIGN_FORWARD_SYSLOG_FORMAT=rfc5424                 (or cef: a CEF event as the message)
 *   COUNTERSIGN_FORWARD_HTTP_URL=https://siem.example/ingest
 *   COUNTERSIGN_FORWARD_HTTP_TOKEN=…                          (sent as a bearer token)
 *   COUNTERSIGN_FORWARD_HTTP_CA=/etc/countersign/siem-ca.pem
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CountersignError } from '@countersign/core';
import { DEFAULT_MAX_MESSAGE_BYTES } from './format.ts';

type Environment = Readonly<Record<string, string | undefined>>;

export interface SyslogDestination {
  readonly kind: 'syslog';
  /** The cursor's key: `syslog:<host>:<port>` (a new address starts from the trail's beginning). */
  readonly id: string;
  readonly tls: boolean;
  readonly host: string;
  readonly port: number;
  /** PEM file of the CA(s) to trust instead of the system's; null: the system's. */
  readonly caPath: string | null;
  /** `rfc5424`: structured data + the entry's JSON; `cef`: a CEF event as the message (README, CEF field mappings). */
  readonly format: 'rfc5424' | 'cef';
}

export interface HttpDestination {
  readonly kind: 'http';
  /** `http:<origin><path>`. */
  readonly id: string;
  readonly url: string;
  readonly token: string | undefined;
  readonly caPath: string | null;
}

export type ForwardDestination = SyslogDestination | HttpDestination;

export interface ForwardingConfig {
  readonly destinations: readonly ForwardDestination[];
  /** COUNTERSIGN_FORWARD_BATCH (200, at most 1000): entries per syslog write or HTTP POST. */
  readonly batch: number;
  /**
   * COUNTERSIGN_FORWARD_BATCH_BYTES (1 MiB): the most bytes one write or POST carries; a batch
   * stops before the entry that would pass it (one entry always goes: a message is bounded by
   * _MAX_MESSAGE_BYTES, an NDJSON line by 64 KiB). With the batch this bounds the memory per destination.
   */
  readonly batchBytes: number;
  /** COUNTERSIGN_FORWARD_POLL_MS (1000): how often an idle forwarder looks for new entries. */
  readonly pollMs: number;
  /** COUNTERSIGN_FORWARD_LEASE_MS (15000): how long a dead process's lease on a destination holds it. */
  readonly leaseMs: number;
  /** COUNTERSIGN_FORWARD_MAX_MESSAGE_BYTES (8192): the bound of one syslog message. */
  readonly maxMessageBytes: number;
  /**
   * COUNTERSIGN_FORWARD_SYSLOG_CONFIRM_MS (2000): syslog has no acknowledgement, so a batch counts
   * as delivered (and the cursor moves) only once its connection stayed open this long after the
   * write; a connection that breaks sooner has its unconfirmed batches sent again.
   */
  readonly syslogConfirmMs: number;
}

/** One character no header value may hold (a single character class: linear time). */
const HEADER_UNSAFE = /[^\t\x20-\x7e\x80-\xff]/;

function integer(env: Environment, name: string, min: number, max: number, fallback: number): number {
  const value = env[name];
  const n = value === undefined || value === '' ? fallback : Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new CountersignError('VALIDATION_FAILED', `${name} must be an integer ${min}–${max} (got "${value}")`, { field: name });
  return n;
}

function caPath(env: Environment, name: string, cwd: string): string | null {
  const value = env[name];
  if (!value) return null;
  const path = resolve(cwd, value);
  if (!existsSync(path)) throw new CountersignError('VALIDATION_FAILED', `${name}: ${path} does not exist`, { field: name });
  return path;
}

export function resolveForwardingConfig(env: Environment, cwd: string): ForwardingConfig {
  const destinations: ForwardDestination[] = [];
  const syslog = env.COUNTERSIGN_FORWARD_SYSLOG_URL;
  if (syslog) {
    let url: URL;
    try {
      url = new URL(syslog);
    } catch {
      throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_SYSLOG_URL must be tls://host:port or tcp://host:port (got "${syslog}")`, { field: 'COUNTERSIGN_FORWARD_SYSLOG_URL' });
    }
    if ((url.protocol !== 'tls:' && url.protocol !== 'tcp:') || url.hostname === '' || url.pathname.replace(/^\/$/, '') !== '' || url.username || url.password) {
      throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_SYSLOG_URL must be tls://host:port or tcp://host:port (got "${syslog}")`, { field: 'COUNTERSIGN_FORWARD_SYSLOG_URL' });
    }
    const tls = url.protocol === 'tls:';
    // RFC 5425 assigns 6514 to syslog over TLS; plain TCP has no assigned port, 514 by custom.
    const port = url.port === '' ? (tls ? 6514 : 514) : Number(url.port);
    if (port === 0) throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_SYSLOG_URL: port 0 is not a port a receiver can listen on (got "${syslog}")`, { field: 'COUNTERSIGN_FORWARD_SYSLOG_URL' });
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const ca = caPath(env, 'COUNTERSIGN_FORWARD_SYSLOG_CA', cwd);
    if (!tls && ca !== null) throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_FORWARD_SYSLOG_CA needs a tls:// COUNTERSIGN_FORWARD_SYSLOG_URL', { field: 'COUNTERSIGN_FORWARD_SYSLOG_CA' });
    const format = env.COUNTERSIGN_FORWARD_SYSLOG_FORMAT || 'rfc5424';
    if (format !== 'rfc5424' && format !== 'cef') throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_SYSLOG_FORMAT must be rfc5424 or cef (got "${format}")`, { field: 'COUNTERSIGN_FORWARD_SYSLOG_FORMAT' });
    destinations.push(Object.freeze({ kind: 'syslog', id: `syslog:${host}:${port}`, tls, host, port, caPath: ca, format }));
  } else if (env.COUNTERSIGN_FORWARD_SYSLOG_CA || env.COUNTERSIGN_FORWARD_SYSLOG_FORMAT) {
    throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_FORWARD_SYSLOG_CA and _FORMAT need COUNTERSIGN_FORWARD_SYSLOG_URL', { field: 'COUNTERSIGN_FORWARD_SYSLOG_URL' });
  }
  const http = env.COUNTERSIGN_FORWARD_HTTP_URL;
  if (http) {
    let url: URL;
    try {
      url = new URL(http);
    } catch {
      throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_HTTP_URL must be an https:// URL (got "${http}")`, { field: 'COUNTERSIGN_FORWARD_HTTP_URL' });
    }
    // The trail (redacted, but still who approved what) never crosses the network in the clear over HTTP.
    if (url.protocol !== 'https:' || url.username || url.password) {
      throw new CountersignError('VALIDATION_FAILED', `COUNTERSIGN_FORWARD_HTTP_URL must be an https:// URL without credentials (give the token in COUNTERSIGN_FORWARD_HTTP_TOKEN)`, { field: 'COUNTERSIGN_FORWARD_HTTP_URL' });
    }
    if (url.port === '0') throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_FORWARD_HTTP_URL: port 0 is not a port a receiver can listen on', { field: 'COUNTERSIGN_FORWARD_HTTP_URL' });
    const token = env.COUNTERSIGN_FORWARD_HTTP_TOKEN || undefined;
    // What an HTTP header value may carry (tab, visible ASCII, Latin-1 above 0x7f): a line break
    // would fail every POST (Node refuses it) — or, elsewhere, split the header. The value is never echoed.
    if (token !== undefined && HEADER_UNSAFE.test(token)) {
      throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_FORWARD_HTTP_TOKEN holds a character an HTTP header cannot carry (a control character such as CR or LF, or one outside Latin-1)', { field: 'COUNTERSIGN_FORWARD_HTTP_TOKEN' });
    }
    destinations.push(
      Object.freeze({ kind: 'http', id: `http:${url.origin}${url.pathname}`, url: url.href, token, caPath: caPath(env, 'COUNTERSIGN_FORWARD_HTTP_CA', cwd) }),
    );
  } else if (env.COUNTERSIGN_FORWARD_HTTP_CA || env.COUNTERSIGN_FORWARD_HTTP_TOKEN) {
    throw new CountersignError('VALIDATION_FAILED', 'COUNTERSIGN_FORWARD_HTTP_TOKEN and _CA need COUNTERSIGN_FORWARD_HTTP_URL', { field: 'COUNTERSIGN_FORWARD_HTTP_URL' });
  }
  return Object.freeze({
    destinations: Object.freeze(destinations),
    batch: integer(env, 'COUNTERSIGN_FORWARD_BATCH', 1, 1000, 200),
    batchBytes: integer(env, 'COUNTERSIGN_FORWARD_BATCH_BYTES', 4096, 16 * 1024 * 1024, 1024 * 1024),
    pollMs: integer(env, 'COUNTERSIGN_FORWARD_POLL_MS', 50, 60_000, 1000),
    leaseMs: integer(env, 'COUNTERSIGN_FORWARD_LEASE_MS', 1000, 600_000, 15_000),
    maxMessageBytes: integer(env, 'COUNTERSIGN_FORWARD_MAX_MESSAGE_BYTES', 2048, 65_536, DEFAULT_MAX_MESSAGE_BYTES),
    syslogConfirmMs: integer(env, 'COUNTERSIGN_FORWARD_SYSLOG_CONFIRM_MS', 0, 60_000, 2000),
  });
}
