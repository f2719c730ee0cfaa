/**
 * The governance pre-check caller (issue 18): the one place Countersign talks to a validator.
 * Built by the composition root (runtime.ts) and handed to the engine; the decisions are core's
 * (`@countersign/core` precheck/: the body, reading the answer, precheckOutcomes).
 *
 * One call: POST the bounded body (canonical JSON) to the policy's URL (OPA: `{url}/v1/data/{path}`
 * with `{input}`), with the headers the server environment variable `headersEnv` holds (a JSON
 * object), never following a redirect (node:http does not), reading at most 64 KiB of the answer
 * while it streams (more is cut off and counts as an error), all within `timeoutMs` for the whole
 * exchange (connect, send, answer, body). Every failure is a result with status `error`, which the
 * validator's `onError` judges; nothing here throws for a validator's misbehaviour.
 *
 * Reviewer budget: a vote that needs validators called again (a changed payload, a changed
 * validator) spends one unit per validator from the reviewer's budget (`perReviewerPerMinute`,
 * default 30, per server process); an empty budget refuses the vote with RATE_LIMITED before any
 * call, so a reviewer cannot make Countersign hammer a validator.
 */
import http from 'node:http';
import https from 'node:https';
import {
  CountersignError,
  MAX_PRECHECK_RESPONSE_BYTES,
  cleanReason,
  precheckIdentityText,
  precheckRequestBody,
  precheckWireBody,
  readValidatorAnswer,
  type PrecheckConfig,
  type PrecheckResult,
  type PrecheckSubject,
} from '@countersign/core';
import type { Environment } from '../environment.ts';
import { sha256Hex } from '../ids.ts';

export const DEFAULT_REVIEWER_PRECHECKS_PER_MINUTE = 30;
export const DEFAULT_AGENT_PRECHECKS_PER_MINUTE = 600;
/** At most this many budget windows are kept (PrecheckCaller.spend evicts the oldest beyond it). */
export const MAX_BUDGETS = 10_000;

export interface PrecheckCallerOptions {
  /** The server's environment as resolved once (config.env): where `headersEnv` names are looked up. */
  env: Environment;
  perReviewerPerMinute?: number;
  perAgentPerMinute?: number;
  now?: () => number;
}

/** The identity a result is bound to: SHA-256 of the validator's canonical config (core precheckIdentityText). */
export function precheckIdentity(c: PrecheckConfig): string {
  return sha256Hex(precheckIdentityText(c));
}

export class PrecheckCaller {
  private readonly budgets = new Map<string, { windowStart: number; used: number }>();
  private readonly perMinute: number;
  private readonly perAgentMinute: number;
  private readonly now: () => number;

  constructor(private readonly options: PrecheckCallerOptions) {
    this.perMinute = options.perReviewerPerMinute ?? DEFAULT_REVIEWER_PRECHECKS_PER_MINUTE;
    this.perAgentMinute = options.perAgentPerMinute ?? DEFAULT_AGENT_PRECHECKS_PER_MINUTE;
    this.now = options.now ?? Date.now;
  }

  /** The identity a result is bound to: SHA-256 of the validator's canonical config. */
  identity(c: PrecheckConfig): string {
    return precheckIdentity(c);
  }

  /** Spend `calls` of a reviewer's budget, or refuse (RATE_LIMITED, nothing called). */
  reserve(reviewerId: string, calls: number): void {
    this.spend(`operator:${reviewerId}`, calls, this.perMinute, 'you have used');
  }

  /** Spend `calls` of an agent's budget (creates; `perAgentPerMinute`, default 600), or refuse (RATE_LIMITED, nothing called or created). */
  reserveAgent(agentId: string, calls: number): void {
    this.spend(`agent:${agentId}`, calls, this.perAgentMinute, 'this agent has used');
  }

  private spend(key: string, calls: number, limit: number, who: string): void {
    const at = this.now();
    let b = this.budgets.get(key);
    if (!b || at - b.windowStart >= 60_000) {
      // Re-inserted when its window restarts, so the map stays in window-start order, oldest first.
      this.budgets.delete(key);
      if (this.budgets.size >= MAX_BUDGETS) this.evict(at);
      b = { windowStart: at, used: 0 };
      this.budgets.set(key, b);
    }
    if (b.used + calls > limit) {
      const retryAfter = Math.max(1, Math.ceil((b.windowStart + 60_000 - at) / 1000));
      throw new CountersignError('RATE_LIMITED', `this would call ${calls} pre-check validator(s) and ${who} ${b.used} of ${limit} calls a minute; retry in ${retryAfter} s`, { retryAfter });
    }
    b.used += calls;
  }

  /**
   * At MAX_BUDGETS windows: drop the ended windows (at the front), then, while still full, the
   * oldest live one. Never every budget at once (a flood of new keys cannot reset anyone else's).
   */
  private evict(at: number): void {
    for (const [k, v] of this.budgets) {
      if (this.budgets.size < MAX_BUDGETS && at - v.windowStart < 60_000) break;
      this.budgets.delete(k);
    }
  }

  /** Call every validator in `configs` at once for one subject; one result each, in order. */
  async run(configs: readonly PrecheckConfig[], subject: PrecheckSubject): Promise<PrecheckResult[]> {
    return Promise.all(configs.map((c) => this.call(c, subject)));
  }

  async call(c: PrecheckConfig, subject: PrecheckSubject): Promise<PrecheckResult> {
    const identity = this.identity(c);
    // Every error text is cleaned as a reason is (F2): a socket error can quote what the validator sent.
    const error = (message: string): PrecheckResult => ({ name: c.name, identity, status: 'error', reasons: [], error: cleanReason(message) });
    const wire = precheckWireBody(c.kind, precheckRequestBody(c.name, subject));
    if (wire === null) return error('the request body is larger than a validator is sent');
    let extra: Record<string, string> = {};
    if (c.headersEnv !== null) {
      const raw = this.options.env[c.headersEnv];
      try {
        const parsed: unknown = raw === undefined ? undefined : JSON.parse(raw);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string')) throw new Error();
        extra = parsed as Record<string, string>;
      } catch {
        return error(`the environment variable ${c.headersEnv} (headersEnv) is not set to a JSON object of header strings`);
      }
    }
    const url = new URL(c.kind === 'opa' ? `${c.url.replace(/\/+$/, '')}/v1/data/${c.path}` : c.url);
    let answer: { status: number; contentType: string | null; body: string; truncated: boolean };
    try {
      answer = await exchange(url, wire, extra, c.timeoutMs);
    } catch (err) {
      return error((err as Error).message);
    }
    const read = readValidatorAnswer(c.kind, answer);
    if (read.status === 'error') return error(read.error);
    return { name: c.name, identity, status: read.status, reasons: read.reasons, ...(read.status === 'allow' && read.raiseTo !== undefined ? { raiseTo: read.raiseTo } : {}) };
  }
}

/** One POST, the timeout over all of it, the answer read up to the cap (then cut off). */
function exchange(url: URL, body: string, extra: Record<string, string>, timeoutMs: number): Promise<{ status: number; contentType: string | null; body: string; truncated: boolean }> {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    let done = false;
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      f();
    };
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(extra)) headers[k.toLowerCase()] = v;
    Object.assign(headers, { 'content-type': 'application/json', accept: 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': 'countersign-precheck/1' });
    const req = lib.request(url, { method: 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      let truncated = false;
      res.on('data', (chunk: Buffer) => {
        if (truncated) return;
        if (size + chunk.length > MAX_PRECHECK_RESPONSE_BYTES) {
          truncated = true;
          req.destroy();
          finish(() => resolve({ status: res.statusCode ?? 0, contentType: headerOf(res.headers['content-type']), body: '', truncated: true }));
          return;
        }
        size += chunk.length;
        chunks.push(chunk);
      });
      res.on('end', () => finish(() => resolve({ status: res.statusCode ?? 0, contentType: headerOf(res.headers['content-type']), body: Buffer.concat(chunks).toString('utf8'), truncated: false })));
      res.on('error', (err) => finish(() => reject(err)));
      res.on('aborted', () => finish(() => reject(new Error('the validator closed the connection mid-answer'))));
    });
    const timer = setTimeout(() => {
      finish(() => reject(new Error(`no complete answer within ${timeoutMs} ms`)));
      req.destroy();
    }, timeoutMs);
    req.on('error', (err) => finish(() => reject(new Error(`could not reach the validator: ${err.message}`))));
    req.end(body);
  });
}

function headerOf(v: string | string[] | undefined): string | null {
  return typeof v === 'string' ? v : null;
}
