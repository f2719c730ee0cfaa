/**
 * The dashboard talks only to the public HTTP API, with the session cookie (HttpOnly: this code
 * never sees the operator's token after sign-in). State-changing calls carry the session's CSRF
 * token in `X-Countersign-CSRF`.
 */
import type { CreationOptions, RequestOptions, StepUp, createPasskey, getAssertion } from './webauthn.ts';

/** Proof of a factor you already have, for a change to your factors. */
export type FactorProof = { totp?: string; webauthn?: Awaited<ReturnType<typeof getAssertion>> };
import type { ApprovalRequest, AuditLeaf, MetricsSummary, ReviewBody, Role } from '@countersign/core';
import type { CooldownInfo, VelocityInfo } from './why.ts';

export type { ApprovalRequest };

export interface Operator {
  id: string;
  name: string;
  roles: Role[];
}

export interface SessionInfo {
  operator: Operator;
  csrfToken: string | null;
  expiresAt: string | null;
}

/** An audit entry as the API shows it (core's AuditLeaf). */
export type AuditEntry = AuditLeaf;

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** A page of `GET /v1/requests`: the rows, the counts of the same query, and how many more follow. */
export interface QueuePage extends Page<ApprovalRequest> {
  counts: { total: number; critical: number; high: number; medium: number; low: number };
  remaining: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

let csrfToken: string | null = null;
let onUnauthenticated: (() => void) | null = null;

export function setUnauthenticatedHandler(handler: (() => void) | null): void {
  onUnauthenticated = handler;
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-countersign-csrf'] = csrfToken;
  let res: Response;
  try {
    res = await fetch(path, { method, headers, credentials: 'same-origin', cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  } catch (err) {
    throw new ApiError(0, 'NETWORK_ERROR', `the server did not answer (${(err as Error).message})`);
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: reported below
  }
  if (!res.ok) {
    const error = (parsed as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
    const err = new ApiError(res.status, error?.code ?? 'HTTP_' + res.status, error?.message ?? res.statusText, error?.details);
    if (res.status === 401 && path !== '/v1/session') onUnauthenticated?.();
    throw err;
  }
  return parsed as T;
}

export const api = {
  async signIn(token: string): Promise<SessionInfo> {
    const info = await call<SessionInfo>('POST', '/v1/session', { token });
    csrfToken = info.csrfToken;
    return info;
  },
  /** Whether single sign-on is configured (outside /v1: no credential needed). */
  ssoStatus: () => call<{ enabled: false } | { enabled: true; label: string; loginPath: string }>('GET', '/sso/status'),
  async session(): Promise<SessionInfo> {
    const info = await call<SessionInfo>('GET', '/v1/session');
    csrfToken = info.csrfToken;
    return info;
  },
  async signOut(): Promise<void> {
    try {
      await call('DELETE', '/v1/session');
    } finally {
      csrfToken = null;
    }
  },
  request: (id: string) => call<ApprovalRequest>('GET', `/v1/requests/${encodeURIComponent(id)}`),
  list: (query: Record<string, string | number | undefined>) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') params.set(k, String(v));
    return call<Page<ApprovalRequest>>('GET', `/v1/requests?${params}`);
  },
  /** The queue (or any listing) with its counts: filtered, ordered and paged by the server. */
  queue: (query: Record<string, string | number | undefined>) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== '') params.set(k, String(v));
    return call<QueuePage>('GET', `/v1/requests?${params}`);
  },
  review: (id: string, body: ReviewBody) => call<ApprovalRequest>('POST', `/v1/requests/${encodeURIComponent(id)}/reviews`, body),
  /** Escalate now, one level up, with a reason; `fromLevel` is the level the reviewer saw (refused with level_changed if it moved on). */
  escalate: (id: string, body: { reason: string; fromLevel: number }) => call<ApprovalRequest>('POST', `/v1/requests/${encodeURIComponent(id)}/escalate`, body),
  audit: (id: string) => call<{ items: AuditEntry[] }>('GET', `/v1/requests/${encodeURIComponent(id)}/audit`),
  auditByType: (type: string, after?: number) =>
    call<{ items: AuditEntry[] }>('GET', `/v1/audit?type=${encodeURIComponent(type)}&limit=1000${after === undefined ? '' : `&after=${after}`}`),
  feedback: (id: string, verdict: 'should_have_asked' | 'ok', note?: string) =>
    call<AuditEntry>('POST', `/v1/requests/${encodeURIComponent(id)}/feedback`, { verdict, ...(note ? { note } : {}) }),
  /** Whether the signed-in operator has a confirmed authenticator (step-up MFA). */
  totpStatus: () => call<{ enrolled: boolean; pending: boolean }>('GET', '/v1/operators/me/totp'),
  /** Starts enrolment: the secret and otpauth:// URI are shown this once. (The server wants a JSON body, even an empty one.) */
  totpEnrol: () => call<{ secret: string; otpauthUri: string; encryptedAtRest: boolean; confirmWith: string }>('POST', '/v1/operators/me/totp', {}),
  /** `webauthn`: beside a passkey, an assertion over `totpChallenge`'s stepUp. */
  totpConfirm: (code: string, proof: FactorProof = {}) => call<{ enrolled: true; confirmedAt: string }>('POST', '/v1/operators/me/totp/confirm', { code, ...(proof.webauthn ? { webauthn: proof.webauthn } : {}) }),
  totpChallenge: () => call<{ stepUp: StepUp | null }>('POST', '/v1/operators/me/totp/challenge', {}),
  /** WebAuthn step-up: the signed-in operator's passkeys and security keys (or another's, for an admin). */
  webauthnList: (ref = 'me') => call<{ operatorId: string; operator: string; credentials: WebAuthnCredential[] }>('GET', `/v1/operators/${encodeURIComponent(ref)}/webauthn`),
  webauthnOptions: () => call<CreationOptions>('POST', '/v1/operators/me/webauthn/options', {}),
  /** `proof`: a TOTP code or an assertion over `stepUp.webauthn`, when the options asked for one. */
  webauthnRegister: (body: Awaited<ReturnType<typeof createPasskey>> & FactorProof) => call<WebAuthnCredential>('POST', '/v1/operators/me/webauthn', body),
  /** What revoking this credential asks of you (stepUp null: nothing). */
  webauthnRevokeOptions: (id: string, ref = 'me') => call<{ stepUp: StepUp | null }>('POST', `/v1/operators/${encodeURIComponent(ref)}/webauthn/${encodeURIComponent(id)}/challenge`, {}),
  webauthnRevoke: (id: string, proof: FactorProof = {}, ref = 'me') =>
    call<WebAuthnCredential>('DELETE', `/v1/operators/${encodeURIComponent(ref)}/webauthn/${encodeURIComponent(id)}`, proof.totp !== undefined || proof.webauthn !== undefined ? proof : undefined),
  /** A challenge bound to this request, the payload hash approved and the verdict (single use, 2 minutes). */
  webauthnChallenge: (id: string, payloadHash: string) => call<RequestOptions>('POST', `/v1/requests/${encodeURIComponent(id)}/webauthn/challenge`, { verdict: 'approve', payloadHash }),
  cooldown: (operatorId: string) => call<CooldownInfo>('GET', `/v1/approvers/${encodeURIComponent(operatorId)}/cooldown`),
  velocity: (operatorId: string) => call<VelocityInfo>('GET', `/v1/approvers/${encodeURIComponent(operatorId)}/velocity`),
  /** A screening verdict on a finding: separate from approve/reject. */
  screenVerdict: (id: string, finding: number, verdict: 'injection' | 'not_injection' | 'unsure') =>
    call<unknown>('POST', `/v1/requests/${encodeURIComponent(id)}/screening/verdicts`, { finding, verdict }),
  screeningReport: () => call<ScreeningReport>('GET', '/v1/screening/report'),
  summary: (query: { from?: string; to?: string; bucket?: 'hour' | 'day' }) => {
    const params = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined) as Array<[string, string]>);
    return call<MetricsSummary>('GET', `/v1/metrics/summary?${params}`);
  },
};

export type { MetricsSummary, Rates } from '@countersign/core';

export interface WebAuthnCredential {
  id: string;
  name: string;
  credentialId: string;
  algorithm: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** Its sign counter went back (a suspected clone): it approves nothing until revoked and replaced. */
  suspendedAt: string | null;
  signCount: number;
  intact: boolean;
}

/** GET /v1/screening/report (server engine/screening.ts). */
export interface ScreeningReport {
  window: { since: string; verdicts: number };
  guard: { verdictRoles: string[]; maxWeightPerSource: number; refused: { unauthorised: number; unsure: number; superseded: number } };
  rates: { detectionRate: number | null; falsePositiveRate: number | null; falseNegativeRate: { rate: number; lower: number; upper: number; audited: number } | null };
  calibration: Record<
    string,
    {
      channel: string;
      proposed: number | null;
      reason: string;
      current: { threshold: number; fpr: number; fprUpper: number; recall: number };
      atProposed: { threshold: number; fpr: number; fprUpper: number; recall: number } | null;
      effect: { newlyFlagged: number; newlyAllowed: number };
    }
  >;
}
