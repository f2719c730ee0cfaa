/**
 * The server's one logger: pino, JSON lines on stdout, at COUNTERSIGN_LOG_LEVEL (config.ts
 * `LoggingConfig`). Every line the server logs goes through here (runtime, HTTP, signals,
 * reloads); the first-start banner with the generated credentials is not a log line and is
 * printed apart from this stream (cli/commands/serve.ts).
 *
 * Secrets never reach the stream: the lines are our own sentences, never a request's body, and
 * `REDACT` censors the fields a future caller might pass by mistake (tokens, keys, TOTP codes,
 * cookies, Authorization headers) — at the top level and one level down.
 *
 * Loaded only by `serve` (the CLI's start-up and client commands never import pino).
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import type { ApprovalRequest } from '@countersign/core';
import type { LoggingConfig } from './config.ts';

const SECRET_KEYS = [
  'token',
  'adminToken',
  'agentKey',
  'apiKey',
  'key',
  'secret',
  'password',
  'totp',
  'code',
  'otp',
  'cookie',
  'authorization',
  'sessionSecret',
  'encryptionKey',
];

/** pino `redact` paths: each secret key at the top, one level down, and in request/response headers. */
export const REDACT: readonly string[] = [
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((k) => `*.${k}`),
  'headers.authorization',
  'headers.cookie',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
];

export type ServerLogger = Logger;

/** The logger `serve` uses; `destination` is for tests (default stdout). */
export function createLogger(config: LoggingConfig, destination?: DestinationStream): ServerLogger {
  const options = {
    level: config.level,
    base: { name: 'countersign', pid: process.pid },
    redact: { paths: [...REDACT], censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options, pino.destination({ dest: 1, sync: true }));
}

export type LineLevel = 'debug' | 'info' | 'warn' | 'error';

/** A `(line, level?) => void` for the parts that log sentences (runtime.ts, app.ts); default level error. */
export function lineLogger(logger: ServerLogger): (line: string, level?: LineLevel) => void {
  return (line, level = 'error') => logger[level](line.replace(/^countersign: /, ''));
}

/**
 * COUNTERSIGN_DEBUG=1's line for one create: why it was routed where it went, and nothing the
 * agent wrote — no action, args, description, context or reasons, only ids and the policy's own
 * names (rule names come from the policy file, not from the request).
 */
export function routingFields(request: Pick<ApprovalRequest, 'id' | 'agentId' | 'assessment'>) {
  const a = request.assessment;
  return {
    event: 'routed',
    requestId: request.id,
    agentId: request.agentId,
    route: a.route,
    riskLevel: a.riskLevel,
    riskScore: a.riskScore,
    matchedRules: a.matchedRules.map((r) => r.name),
    automationLevel: a.automationLevel,
  };
}
