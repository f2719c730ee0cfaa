/**
 * WebAuthn step-up (issue 20): passkeys and security keys as a phishing-resistant alternative to
 * TOTP. The ceremonies are verified in `webauthn-verify.ts`; this file keeps the rows and the
 * binding:
 *
 *   enrolment   registrationOptions(op) → navigator.credentials.create → register(op, body)
 *   approval    approvalChallenge(op, requestId, {verdict, payloadHash}) → navigator.credentials.get
 *               → POST /v1/requests/:id/reviews {…, webauthn: assertion}
 *
 * The challenge IS the approval: `nonce ‖ SHA-256("countersign/webauthn/approve", request id,
 * payload hash, verdict, nonce, expiry)`, where the nonce is a one-time server row with a short
 * expiry. At the vote the hash is recomputed from the request actually under review and the hash
 * of the payload the vote actually approves (engine/decisions.ts), so an assertion made for one
 * request, payload or verdict verifies for no other. The nonce is used and the sign counter moved
 * in the vote's own transaction (conditional updates: a lost race refuses the vote).
 *
 * Credential rows are MACed under the server secret over everything that matters (key, counter,
 * revocation): a row planted or edited by a database writer is not enrolled (fail closed).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { CountersignError, ROLE_RANK, type StepUpFact, type WebAuthnAssertion, type WebAuthnRegistration } from '@countersign/core';
import { actorOf, draft as audit, type AuditDraft, type AuditWriter } from '../audit/writer.ts';
import type { Principal } from '../engine/principal.ts';
import { operatorRef } from '../engine/refs.ts';
import { newId } from '../ids.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { Queries, Store } from '../store/store.ts';
import type { WebAuthnCredentialsTable } from '../store/webauthn.ts';
import { WebAuthnError, b64url, challengeOf, counterOk, fromB64url, verifyAssertion, verifyRegistration, type WebAuthnFailure } from './webauthn-verify.ts';

type Operator = Extract<Principal, { kind: 'operator' }>;

/** How long a challenge may be answered: long enough to touch a key, short enough that a stolen one soon dies. */
export const CHALLENGE_TTL_MS = 2 * 60_000;
const NONCE_BYTES = 16;
const MAC_LABEL = 'webauthn_credential';

export interface RelyingParty {
  /** The RP ID: the dashboard's host name (`localhost` for a loopback address, which browsers do not accept as an RP ID). */
  readonly id: string;
  /** Origins whose ceremonies are accepted (the dashboard's). */
  readonly origins: readonly string[];
}

/**
 * The relying party of a dashboard reached at `base` (COUNTERSIGN_PUBLIC_URL, else the listen
 * URL). A loopback IP address becomes `localhost` (browsers refuse IP addresses as RP IDs, and
 * treat http://localhost as a secure context), so a local `npm start` works at http://localhost:<port>.
 */
export function relyingPartyOf(base: string): RelyingParty {
  const url = new URL(base);
  const loopback = url.hostname === '127.0.0.1' || url.hostname === '[::1]' || url.hostname === '::1';
  const host = loopback ? 'localhost' : url.hostname;
  const origin = `${url.protocol}//${host}${url.port ? `:${url.port}` : ''}`;
  return { id: host, origins: [origin] };
}

/** The challenge bytes for one approval: the nonce, then the hash of what is approved. */
export function approvalChallenge(nonce: Buffer, requestId: string, payloadHash: string, verdict: string, expiresAt: number): Buffer {
  const bound = createHash('sha256').update(['countersign/webauthn/approve', requestId, payloadHash, verdict, nonce.toString('hex'), String(expiresAt)].join('\u0000')).digest();
  return Buffer.concat([nonce, bound]);
}

function registrationChallenge(nonce: Buffer, operatorId: string, expiresAt: number): Buffer {
  const bound = createHash('sha256').update(['countersign/webauthn/register', operatorId, nonce.toString('hex'), String(expiresAt)].join('\u0000')).digest();
  return Buffer.concat([nonce, bound]);
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What a WebAuthn assertion on a vote is worth, and what accepting it writes (`use`). */
export interface AssertionFact {
  fact: StepUpFact;
  /** Why not, in words (for the refusal and the trail). */
  reason?: { code: WebAuthnFailure | 'not_enrolled' | 'revoked' | 'challenge_used' | 'other_approval'; message: string };
  /** When valid: the credential and nonce to consume in the vote's transaction. */
  use?: { id: string; credentialId: string; before: number; signCount: number; nonce: string; uv: boolean; row: WebAuthnCredentialsTable };
}

export class WebAuthnGuard {
  private rp: RelyingParty | null = null;

  constructor(
    private readonly store: Store,
    private readonly now: () => number,
    private readonly writer: AuditWriter,
    private readonly secret: ServerSecret,
  ) {}

  /** Where the dashboard is reached (runtime start: COUNTERSIGN_PUBLIC_URL or the listen URL). */
  useRelyingParty(rp: RelyingParty): void {
    this.rp = rp;
  }

  get relyingParty(): RelyingParty {
    if (!this.rp) throw new CountersignError('MFA_REQUIRED', 'WebAuthn is not available: the server does not know the dashboard’s address (COUNTERSIGN_PUBLIC_URL)');
    return this.rp;
  }

  private macFields(r: WebAuthnCredentialsTable): unknown[] {
    return [r.id, r.operator_id, r.credential_id, r.public_key, r.alg, Number(r.sign_count), r.created_at, r.revoked_at === null ? null : Number(r.revoked_at)];
  }

  private mac(r: WebAuthnCredentialsTable): string {
    return this.secret.mac(MAC_LABEL, this.macFields(r));
  }

  private authentic(r: WebAuthnCredentialsTable): boolean {
    return this.secret.verify(MAC_LABEL, this.macFields(r), r.mac);
  }

  private view(r: WebAuthnCredentialsTable) {
    return {
      id: r.id,
      name: r.name,
      credentialId: r.credential_id,
      algorithm: r.alg === -7 ? 'ES256' : 'RS256',
      createdAt: new Date(Number(r.created_at)).toISOString(),
      lastUsedAt: r.last_used_at === null ? null : new Date(Number(r.last_used_at)).toISOString(),
      revokedAt: r.revoked_at === null ? null : new Date(Number(r.revoked_at)).toISOString(),
      signCount: Number(r.sign_count),
      intact: this.authentic(r),
    };
  }

  /** An operator's usable credentials: theirs, unrevoked, MAC intact. */
  private async active(q: Queries, operatorId: string): Promise<WebAuthnCredentialsTable[]> {
    return (await q.webauthn.credentialsOf(operatorId)).filter((r) => r.revoked_at === null && this.authentic(r));
  }

  // ---- enrolment ----

  async registrationOptions(by: Principal) {
    const op = requireOperator(by);
    const rp = this.relyingParty;
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    const existing = await this.active(this.store, op.operatorId);
    await this.store.transaction((tx) => tx.webauthn.insertChallenge({ nonce: nonce.toString('hex'), operator_id: op.operatorId, purpose: 'register', request_id: null, payload_hash: null, verdict: null, expires_at: expiresAt, used_at: null, created_at: at }));
    return {
      rp: { id: rp.id, name: 'Countersign' },
      user: { id: b64url(Buffer.from(op.operatorId, 'utf8')), name: op.name, displayName: op.name },
      challenge: b64url(registrationChallenge(nonce, op.operatorId, expiresAt)),
      pubKeyCredParams: [
        { type: 'public-key', alg: -7 },
        { type: 'public-key', alg: -257 },
      ],
      timeout: CHALLENGE_TTL_MS,
      attestation: 'none',
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
      excludeCredentials: existing.map((r) => ({ type: 'public-key', id: r.credential_id, transports: JSON.parse(r.transports) as string[] })),
      expiresAt: new Date(expiresAt).toISOString(),
    };
  }

  async register(by: Principal, body: WebAuthnRegistration) {
    const op = requireOperator(by);
    const rp = this.relyingParty;
    const clientDataJSON = fromB64url(body.clientDataJSON);
    return this.store.transaction(async (tx) => {
      const at = this.now();
      let nonce = '';
      let registered;
      try {
        registered = verifyRegistration(
          { credentialId: fromB64url(body.credentialId), clientDataJSON, attestationObject: fromB64url(body.attestationObject) },
          {
            origins: rp.origins,
            rpId: rp.id,
            requireUserVerification: false,
            challenge: (text) => {
              const bytes = fromB64url(text);
              nonce = bytes.subarray(0, NONCE_BYTES).toString('hex');
              return bytes;
            },
          },
        );
      } catch (err) {
        if (err instanceof WebAuthnError) throw new CountersignError('VALIDATION_FAILED', `the passkey registration does not verify: ${err.message}`, { reason: err.reason });
        throw err;
      }
      const row = await tx.webauthn.challenge(nonce);
      const signed = fromB64url((JSON.parse(clientDataJSON.toString('utf8')) as { challenge: string }).challenge);
      if (!row || row.purpose !== 'register' || row.operator_id !== op.operatorId || !sameBytes(signed, registrationChallenge(Buffer.from(nonce, 'hex'), op.operatorId, Number(row.expires_at))) || !(await tx.webauthn.useChallenge(nonce, at))) {
        throw new CountersignError('VALIDATION_FAILED', 'the registration challenge is unknown, expired, already used or another operator’s; start again');
      }
      const credentialId = b64url(registered.credentialId);
      if (await tx.webauthn.credentialById(credentialId)) throw new CountersignError('ILLEGAL_TRANSITION', 'that credential is already enrolled');
      const record: WebAuthnCredentialsTable = {
        id: newId('wac', at),
        operator_id: op.operatorId,
        credential_id: credentialId,
        public_key: b64url(registered.publicKey),
        alg: registered.alg,
        sign_count: registered.signCount,
        name: body.name ?? 'passkey',
        aaguid: registered.aaguid,
        transports: JSON.stringify(body.transports ?? []),
        created_at: at,
        last_used_at: null,
        revoked_at: null,
        revoked_by: null,
        mac: '',
      };
      record.mac = this.mac(record);
      await tx.webauthn.insertCredential(record);
      await this.writer.append(tx, [audit('webauthn_enrolled', null, actorOf(op), { operatorId: op.operatorId, credential: record.id, name: record.name, algorithm: registered.alg === -7 ? 'ES256' : 'RS256', attestation: registered.fmt, userVerified: registered.uv }, at)]);
      return this.view(record);
    });
  }

  /** The credentials of `ref` (`me`, or another operator for an admin). */
  async list(by: Principal, ref: string) {
    const op = requireOperator(by);
    const target = await operatorRef(this.store, by, ref);
    if (target.id !== op.operatorId) requireAdmin(op);
    return { operatorId: target.id, operator: target.name, credentials: (await this.store.webauthn.credentialsOf(target.id)).map((r) => this.view(r)) };
  }

  /** Revokes one credential: its owner, or an admin. Audited. */
  async revoke(by: Principal, ref: string, id: string) {
    const op = requireOperator(by);
    const target = await operatorRef(this.store, by, ref);
    if (target.id !== op.operatorId) requireAdmin(op);
    return this.store.transaction(async (tx) => {
      const at = this.now();
      const row = await tx.webauthn.credential(id);
      if (!row || row.operator_id !== target.id) throw new CountersignError('NOT_FOUND', `operator ${target.name} has no WebAuthn credential ${id}`);
      if (row.revoked_at !== null) throw new CountersignError('ILLEGAL_TRANSITION', 'that credential is already revoked');
      const revoked = { ...row, revoked_at: at, revoked_by: op.operatorId };
      if (!(await tx.webauthn.revokeCredential(id, at, op.operatorId, this.mac(revoked)))) throw new CountersignError('ILLEGAL_TRANSITION', 'that credential is already revoked');
      await this.writer.append(tx, [audit('webauthn_revoked', null, actorOf(op), { operatorId: target.id, operator: target.name, credential: id }, at)]);
      return this.view({ ...revoked, mac: this.mac(revoked) });
    });
  }

  // ---- approval ----

  /** A challenge for one vote on `requestId`: bound to the payload hash the surface shows and the verdict. */
  async approvalChallenge(by: Principal, requestId: string, body: { verdict: 'approve' | 'reject'; payloadHash: string }) {
    const op = requireOperator(by);
    const rp = this.relyingParty;
    const request = await this.store.getRequest(requestId);
    if (!request) throw new CountersignError('NOT_FOUND', `no request ${requestId}`);
    if (request.status !== 'pending') throw new CountersignError('ALREADY_DECIDED', `request ${requestId} is ${request.status}`);
    const credentials = await this.active(this.store, op.operatorId);
    if (credentials.length === 0) throw new CountersignError('MFA_REQUIRED', 'you have no enrolled passkey or security key; enrol one in the dashboard (Settings)', { factor: 'webauthn' });
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    await this.store.transaction((tx) => tx.webauthn.insertChallenge({ nonce: nonce.toString('hex'), operator_id: op.operatorId, purpose: 'approve', request_id: requestId, payload_hash: body.payloadHash, verdict: body.verdict, expires_at: expiresAt, used_at: null, created_at: at }));
    return {
      challenge: b64url(approvalChallenge(nonce, requestId, body.payloadHash, body.verdict, expiresAt)),
      rpId: rp.id,
      allowCredentials: credentials.map((r) => ({ type: 'public-key', id: r.credential_id, transports: JSON.parse(r.transports) as string[] })),
      userVerification: 'preferred',
      timeout: CHALLENGE_TTL_MS,
      expiresAt: new Date(expiresAt).toISOString(),
    };
  }

  /**
   * What an assertion on a vote is worth, without using anything up: the credential (theirs,
   * unrevoked, MAC intact), the nonce (theirs, unused, unexpired), the challenge recomputed from
   * the request and the payload hash this vote approves and its verdict, then the ceremony and
   * the counter. `requireUserVerification`: the payload's level says `mfa: webauthn`.
   */
  async assertionFact(tx: Queries, by: Operator, requestId: string, payloadHash: string, verdict: string, assertion: WebAuthnAssertion, requireUserVerification: boolean, at: number): Promise<AssertionFact> {
    let rp: RelyingParty;
    try {
      rp = this.relyingParty;
    } catch {
      return { fact: 'not_enrolled', reason: { code: 'not_enrolled', message: 'WebAuthn is not configured on this server' } };
    }
    const row = await tx.webauthn.credentialById(assertion.credentialId);
    if (!row || row.operator_id !== by.operatorId || !this.authentic(row)) return { fact: 'not_enrolled', reason: { code: 'not_enrolled', message: 'that credential is not enrolled for you' } };
    if (row.revoked_at !== null) return { fact: 'not_enrolled', reason: { code: 'revoked', message: 'that credential was revoked' } };
    let clientDataJSON: Buffer;
    let signed: Buffer;
    try {
      clientDataJSON = fromB64url(assertion.clientDataJSON);
      signed = fromB64url(challengeOf(clientDataJSON));
    } catch (err) {
      return { fact: 'invalid', reason: { code: err instanceof WebAuthnError ? err.reason : 'format', message: (err as Error).message } };
    }
    const nonce = signed.subarray(0, NONCE_BYTES);
    const challenge = signed.length === NONCE_BYTES + 32 ? await tx.webauthn.challenge(nonce.toString('hex')) : undefined;
    if (!challenge || challenge.operator_id !== by.operatorId || challenge.purpose !== 'approve') return { fact: 'replayed', reason: { code: 'challenge', message: 'the assertion answers no challenge this server gave you' } };
    if (challenge.used_at !== null || Number(challenge.expires_at) <= at) return { fact: 'replayed', reason: { code: 'challenge_used', message: 'the challenge was already used or has expired' } };
    if (!sameBytes(signed, approvalChallenge(nonce, requestId, payloadHash, verdict, Number(challenge.expires_at)))) {
      return { fact: 'replayed', reason: { code: 'other_approval', message: 'the assertion was made for another request, payload or verdict' } };
    }
    try {
      const result = verifyAssertion({ clientDataJSON, authenticatorData: fromB64url(assertion.authenticatorData), signature: fromB64url(assertion.signature) }, fromB64url(row.public_key), {
        origins: rp.origins,
        rpId: rp.id,
        requireUserVerification,
        challenge: () => {},
      });
      if (!counterOk(Number(row.sign_count), result.signCount)) {
        return { fact: 'invalid', reason: { code: 'counter', message: `the authenticator’s sign counter went back (${result.signCount} after ${Number(row.sign_count)}): the credential may be cloned` } };
      }
      return { fact: 'valid', use: { id: row.id, credentialId: row.credential_id, before: Number(row.sign_count), signCount: result.signCount, nonce: nonce.toString('hex'), uv: result.uv, row } };
    } catch (err) {
      if (err instanceof WebAuthnError) return { fact: 'invalid', reason: { code: err.reason, message: err.message } };
      return { fact: 'invalid', reason: { code: 'format', message: (err as Error).message } };
    }
  }

  /** An accepted WebAuthn approval, in its transaction: the nonce used, the counter moved (a lost race refuses the vote). */
  async recordUse(tx: Queries, by: Operator, requestId: string, use: NonNullable<AssertionFact['use']>, at: number): Promise<AuditDraft[]> {
    const next = { ...use.row, sign_count: use.signCount, last_used_at: at };
    if (!(await tx.webauthn.useChallenge(use.nonce, at)) || !(await tx.webauthn.useCredential(use.id, use.before, { sign_count: use.signCount, last_used_at: at, mac: this.mac(next) }))) {
      throw new CountersignError('MFA_INVALID', 'that WebAuthn assertion was already used; ask for a new challenge', { factor: 'webauthn' });
    }
    return [audit('step_up', requestId, actorOf(by), { operatorId: by.operatorId, factor: 'webauthn', credential: use.id, userVerified: use.uv, signCount: use.signCount }, at)];
  }

  /** After a refused vote rolled back: a counter gone back is written on the trail as a suspected clone. */
  async auditClone(by: Operator, requestId: string, credentialId: string, message: string): Promise<void> {
    const at = this.now();
    try {
      const row = await this.store.webauthn.credentialById(credentialId);
      await this.store.transaction((tx) => this.writer.append(tx, [audit('webauthn_clone_suspected', requestId, actorOf(by), { operatorId: by.operatorId, credential: row?.id ?? null, reason: message }, at)]));
    } catch {
      // The vote is already being refused; a failed audit must not mask that.
    }
  }
}

function requireOperator(by: Principal): Operator {
  if (by.kind !== 'operator') throw new CountersignError('FORBIDDEN', 'this needs an operator token');
  return by;
}

function requireAdmin(op: Operator): void {
  if (!op.roles.some((r) => ROLE_RANK[r] >= ROLE_RANK.admin)) throw new CountersignError('FORBIDDEN', 'another operator’s WebAuthn credentials need the admin role');
}
