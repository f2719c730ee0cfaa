/**
 * The CLI's small HTTP client. Every non-serve command talks to a server exactly as any other
 * client would; this turns error responses back into `CountersignError` (same code, message and
 * details) and connection trouble into NETWORK_ERROR naming the URL.
 *
 * JSON calls go through node:http (node:https, loaded only for an https URL), not `fetch`: the
 * first `fetch` of a process loads and starts undici, about 100 ms on this machine, which was
 * most of `countersign status`'s cold start beyond loading the CLI (docs/ARCHITECTURE.md, CLI
 * cold start). Streams (exports, reports) keep `fetch`, where that cost is noise.
 */
import type { IncomingMessage, RequestOptions } from 'node:http';
import { CountersignError, type ErrorCode } from '@countersign/core/errors';
import { processEnvironment, resolveClientConfig, type Environment } from '../environment.ts';
import { safe } from './format.ts';

export interface ClientFlags {
  url?: string | undefined;
  token?: string | undefined;
}

export type Query = Record<string, string | number | undefined>;

const DEFAULT_TIMEOUT_MS = 30_000;
const USER_AGENT = 'countersign-cli/0.1.0';

/** Where the URL and token came from, for `countersign config`. */
export interface ClientSources {
  url: 'flag' | 'env' | 'default';
  token: 'flag' | 'env' | 'none';
}

export class ApiClient {
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly sources: ClientSources;
  /** COUNTERSIGN_DATABASE_URL says sqlite::memory:, which no CLI can reach: said when the server cannot be reached. */
  private readonly memoryDatabase: boolean;

  constructor(
    flags: ClientFlags = {},
    env: Environment = processEnvironment(),
    private readonly timeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    // An empty flag or variable counts as unset.
    const url = flags.url || env.COUNTERSIGN_URL || undefined;
    const token = flags.token || env.COUNTERSIGN_TOKEN || undefined;
    const config = resolveClientConfig({ url, token }, {});
    this.baseUrl = config.url;
    this.token = config.token;
    this.memoryDatabase = (env.COUNTERSIGN_DATABASE_URL ?? '').trim() === 'sqlite::memory:';
    this.sources = {
      url: flags.url ? 'flag' : env.COUNTERSIGN_URL ? 'env' : 'default',
      token: flags.token ? 'flag' : env.COUNTERSIGN_TOKEN ? 'env' : 'none',
    };
    let parsed: URL;
    try {
      parsed = new URL(this.baseUrl);
    } catch {
      throw new CountersignError('VALIDATION_FAILED', `server URL "${safe(this.baseUrl)}" is not a valid URL (set COUNTERSIGN_URL or pass --url, e.g. http://127.0.0.1:8080)`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new CountersignError('VALIDATION_FAILED', `server URL "${safe(this.baseUrl)}" must start with http:// or https://`);
    }
  }

  /** A short, non-secret form of the token: its first 6 characters. */
  get tokenHint(): string | null {
    return this.token === undefined ? null : `${this.token.slice(0, 6)}…`;
  }

  get<T>(path: string, query: Query = {}, options: { auth?: boolean } = {}): Promise<T> {
    return this.request<T>('GET', path, { query, auth: options.auth ?? true });
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, { body, auth: true });
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, { body, auth: true });
  }

  delete<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, body === undefined ? { auth: true } : { body, auth: true });
  }

  /** An authenticated GET whose body the caller reads (streams, text); errors as for `get`. No timeout: exports are long. */
  async stream(path: string, query: Query = {}): Promise<Response> {
    if (this.token === undefined) {
      throw new CountersignError('UNAUTHENTICATED', 'no credential: set COUNTERSIGN_TOKEN or pass --token (an operator token, cso_…)');
    }
    let response: Response;
    try {
      response = await fetch(this.url(path, query), {
        headers: { authorization: `Bearer ${this.token}`, 'user-agent': USER_AGENT },
        redirect: 'error',
      });
    } catch (err) {
      throw this.networkError(err);
    }
    if (!response.ok) throw this.errorFrom(response, await response.text().catch(() => ''));
    return response;
  }

  async request<T>(method: string, path: string, options: { query?: Query; body?: unknown; auth: boolean }): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': USER_AGENT };
    if (options.auth) {
      if (this.token === undefined) {
        throw new CountersignError('UNAUTHENTICATED', 'no credential: set COUNTERSIGN_TOKEN or pass --token (an operator token, cso_…; prefer the variable, flags show up in the process list)');
      }
      headers.authorization = `Bearer ${this.token}`;
    }
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    const target = this.url(path, options.query);

    let response: PlainResponse;
    let text: string;
    try {
      ({ response, text } = await send(target, { method, headers }, body, this.timeoutMs));
    } catch (err) {
      throw this.networkError(err);
    }

    if (!response.ok) throw this.errorFrom(response, text);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CountersignError('NETWORK_ERROR', `${this.baseUrl} answered ${method} ${path} with something that is not JSON; is COUNTERSIGN_URL pointing at a Countersign server?`);
    }
  }

  private url(path: string, query: Query = {}): string {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) url.searchParams.set(key, String(value));
    }
    return url.toString();
  }

  private networkError(err: unknown): CountersignError {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    if (e?.name === 'TimeoutError' || e?.name === 'AbortError') {
      return new CountersignError('NETWORK_ERROR', `no answer from ${this.baseUrl} within ${Math.round(this.timeoutMs / 1000)}s`);
    }
    const why = e?.cause?.code ?? e?.cause?.message ?? (e as NodeJS.ErrnoException)?.code ?? e?.message ?? String(err);
    const memory = this.memoryDatabase
      ? '. Note: COUNTERSIGN_DATABASE_URL is sqlite::memory:, a database only the process that opened it can see; the CLI reaches a server over HTTP, ' +
        'so an embedded gateway on sqlite::memory: is decided only by its own gateway.review(). Use a file (sqlite:./countersign.db) and run `countersign serve` on it'
      : '';
    return new CountersignError('NETWORK_ERROR', `cannot reach Countersign at ${this.baseUrl} (${why}); is the server running? Set COUNTERSIGN_URL or pass --url${memory}`);
  }

  private errorFrom(response: PlainResponse, text: string): CountersignError {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    const error = (parsed as { error?: { code?: unknown; message?: unknown; details?: unknown } } | undefined)?.error;
    if (error && typeof error.code === 'string' && typeof error.message === 'string') {
      // A code this CLI does not know yet (a newer server) is passed through as is.
      const code = error.code as ErrorCode;
      // Messages can echo input; they are printed to a terminal, so they are escaped too.
      let message = safe(error.message);
      if (code === 'UNAUTHENTICATED') message += ` (check COUNTERSIGN_TOKEN or --token; server ${this.baseUrl})`;
      return new CountersignError(code, message, error.details);
    }
    return new CountersignError(codeForStatus(response.status), `${this.baseUrl} answered HTTP ${response.status} ${response.statusText}`.trim());
  }
}

/** What `errorFrom` reads of a response: `fetch`'s Response, or send()'s. */
interface PlainResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly statusText: string;
}

/**
 * One HTTP exchange with node:http(s), read whole as UTF-8 text. Like `fetch` with
 * `redirect: 'error'` and `AbortSignal.timeout(timeoutMs)`: a redirect fails (the CLI never
 * sends its token on to another place), and so does an exchange not over within timeoutMs
 * (a TimeoutError). Idle keep-alive sockets do not hold the process open (the agent unrefs them).
 */
async function send(target: string, options: RequestOptions, body: string | undefined, timeoutMs: number): Promise<{ response: PlainResponse; text: string }> {
  const { request } = target.startsWith('https:') ? await import('node:https') : await import('node:http');
  const headers = { ...(options.headers as Record<string, string>), ...(body === undefined ? {} : { 'content-length': String(Buffer.byteLength(body)) }) };
  return new Promise((ok, fail) => {
    let done = false;
    const req = request(target, { ...options, headers }, (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        res.resume();
        return finish(new Error('unexpected redirect'));
      }
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => finish(undefined, { response: { ok: status >= 200 && status < 300, status, statusText: res.statusMessage ?? '' }, text }));
      res.on('error', (err) => finish(err));
    });
    const timer = setTimeout(() => {
      const timeout = new Error(`no answer within ${timeoutMs} ms`);
      timeout.name = 'TimeoutError';
      finish(timeout);
    }, timeoutMs);
    function finish(err: Error | undefined, result?: { response: PlainResponse; text: string }) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        req.destroy();
        fail(err);
      } else ok(result!);
    }
    req.on('error', (err) => finish(err));
    req.end(body);
  });
}

function codeForStatus(status: number): ErrorCode {
  const byStatus: Record<number, ErrorCode> = {
    400: 'VALIDATION_FAILED',
    401: 'UNAUTHENTICATED',
    403: 'FORBIDDEN',
    404: 'NOT_FOUND',
    408: 'WAIT_TIMEOUT',
    409: 'ILLEGAL_TRANSITION',
    413: 'BODY_TOO_LARGE',
    415: 'UNSUPPORTED_MEDIA_TYPE',
    501: 'NOT_IMPLEMENTED',
    503: 'STORE_UNAVAILABLE',
  };
  const code = byStatus[status];
  if (code) return code;
  return status >= 500 ? 'NETWORK_ERROR' : 'VALIDATION_FAILED';
}

/**
 * Path segment for a request id. Ids are opaque to the CLI (the server checks their format),
 * but `.`/`..` or slashes would change which route is called, so only plain tokens pass.
 */
export function idSegment(id: string): string {
  if (!/^[A-Za-z0-9_-]{1,100}$/.test(id)) {
    throw new CountersignError('BAD_ID', `"${safe(id.slice(0, 100))}" is not a request id (they look like req_01j…)`);
  }
  return id;
}
