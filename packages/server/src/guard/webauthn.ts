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
 * revocation, suspension): a row planted or edited by a database writer is not enrolled (fail closed).
 *
 * Changing an operator's factors needs proof of one they already have (review F1, F2): adding a
 * passkey, when they have a confirmed TOTP or an active passkey, takes a current TOTP code or an
 * assertion from an active passkey over a challenge derived from the registration's own nonce
 * (`enrolProofChallenge`); revoking one takes the same from whoever revokes (the owner, or the
 * admin revoking someone else's), over a challenge bound to that credential (`revokeChallenge`).
 * Wrong proofs count toward the step-up lockout like wrong codes on a vote. So a stolen token (or
 * session) alone cannot add its own key and then satisfy `mfa: true` or `mfa: webauthn`.
 *
 * A sign counter that goes back suspends the credential (its own MACed, audited change, after the
 * refused vote rolled back): it approves and proves nothing more until it is revoked and a new one
 * enrolled (review F3).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { CountersignError, ROLE_RANK, type StepUpFact, type WebAuthnAssertion, type WebAuthnRegistration } from '@countersign/core';
import { actorOf, draft as audit, type AuditActor, type AuditDraft, type AuditWriter } from '../audit/writer.ts';
import type { Principal } from '../engine/principal.ts';
import { operatorRef } from '../engine/refs.ts';
import { newId } from '../ids.ts';
import type { ServerSecret } from '../keys/server-secret.ts';
import type { Queries, Store } from '../store/store.ts';
import type { WebAuthnCredentialsTable } from '../store/webauthn.ts';
import { outcomeOf as lockoutOutcome, type StepUpLockout } from './lockout.ts';
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
  /** Why WebAuthn cannot work at this address (an IP address other than loopback): every ceremony is refused with it. */
  readonly unusable?: string;
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
  if (!loopback && isIP(url.hostname.replace(/^\[|\]$/g, '')) !== 0) {
    return {
      id: host,
      origins: [origin],
      unusable: `passkeys cannot work at ${origin}: browsers refuse an IP address as the relying party id; set COUNTERSIGN_PUBLIC_URL to the host name people open the dashboard at (or use http://localhost locally)`,
    };
  }
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

/** What an existing passkey signs to authorise one enrolment: bound to that registration's nonce (same row, purpose `register`), never equal to the registration challenge itself. */
export function enrolProofChallenge(nonce: Buffer, operatorId: string, expiresAt: number): Buffer {
  const bound = createHash('sha256').update(['countersign/webauthn/register-proof', operatorId, nonce.toString('hex'), String(expiresAt)].join('\u0000')).digest();
  return Buffer.concat([nonce, bound]);
}

/** What a passkey signs to authorise revoking one credential: who revokes, whose, which, once. */
export function revokeChallenge(nonce: Buffer, byOperatorId: string, targetOperatorId: string, credential: string, expiresAt: number): Buffer {
  const bound = createHash('sha256').update(['countersign/webauthn/revoke', byOperatorId, targetOperatorId, credential, nonce.toString('hex'), String(expiresAt)].join('\u0000')).digest();
  return Buffer.concat([nonce, bound]);
}

/** What a passkey signs to authorise confirming a TOTP enrolment beside it. */
export function totpChallenge(nonce: Buffer, operatorId: string, expiresAt: number): Buffer {
  const bound = createHash('sha256').update(['countersign/webauthn/totp', operatorId, nonce.toString('hex'), String(expiresAt)].join('\u0000')).digest();
  return Buffer.concat([nonce, bound]);
}

/** The clone alarm, worded as what is known: the counter went back; a copy is one cause, two out-of-order uses another. */
function cloneMessage(received: number, stored: number): string {
  return `the authenticator’s sign counter went back (${received} after ${stored}): the credential may have been cloned (or two uses of it ran out of order); it is suspended and approves nothing until it is revoked and a new passkey enrolled`;
}

/** Proof of a factor the operator already has, for a change to factors (`totp`: a current code; `webauthn`: an assertion over the change's challenge). */
export interface FactorProof {
  totp?: string | undefined;
  webauthn?: WebAuthnAssertion | undefined;
}

/** Which factor authorised a change to factors (audited as `authorisedBy`). */
export type Authorisation = { by: 'none' } | { by: 'totp' } | { by: 'webauthn'; credential: string };

/** The TOTP side of a factor proof, supplied by the guard service (guard/service.ts holds the seeds). */
export interface TotpFactor {
  enrolled(q: Queries, operatorId: string): Promise<boolean>;
  /** The code judged (newer than the last used step) and, when valid, its step. */
  check(q: Queries, by: Operator, code: string, at: number): Promise<{ fact: StepUpFact; step: number | null }>;
  /** Marks the step used (conditionally: false when it lost a race). */
  use(q: Queries, operatorId: string, step: number): Promise<boolean>;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What a WebAuthn assertion on a vote is worth, and what accepting it writes (`use`). */
export interface AssertionFact {
  fact: StepUpFact;
  /** Why not, in words (for the refusal and the trail). */
  reason?: { code: WebAuthnFailure | 'not_enrolled' | 'revoked' | 'suspended' | 'challenge_used' | 'other_approval'; message: string };
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
    private readonly lockout: StepUpLockout,
    private readonly totp: TotpFactor,
  ) {}

  /** Where the dashboard is reached (runtime start: COUNTERSIGN_PUBLIC_URL or the listen URL). */
  useRelyingParty(rp: RelyingParty): void {
    this.rp = rp;
  }

  get relyingParty(): RelyingParty {
    if (!this.rp) throw new CountersignError('MFA_REQUIRED', 'WebAuthn is not available: the server does not know the dashboard’s address (COUNTERSIGN_PUBLIC_URL)');
    if (this.rp.unusable) throw new CountersignError('MFA_REQUIRED', `WebAuthn is not available: ${this.rp.unusable}`);
    return this.rp;
  }

  private macFields(r: WebAuthnCredentialsTable): unknown[] {
    return [r.id, r.operator_id, r.credential_id, r.public_key, r.alg, Number(r.sign_count), r.created_at, r.revoked_at === null ? null : Number(r.revoked_at), r.suspended_at === null ? null : Number(r.suspended_at)];
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
      suspendedAt: r.suspended_at === null ? null : new Date(Number(r.suspended_at)).toISOString(),
      signCount: Number(r.sign_count),
      intact: this.authentic(r),
    };
  }

  /** An operator's usable credentials: theirs, unrevoked, not suspended, MAC intact. */
  private async active(q: Queries, operatorId: string): Promise<WebAuthnCredentialsTable[]> {
    return (await q.webauthn.credentialsOf(operatorId)).filter((r) => r.revoked_at === null && r.suspended_at === null && this.authentic(r));
  }

  /** The factors an operator has now: a confirmed TOTP, active passkeys. */
  private async factors(q: Queries, operatorId: string): Promise<{ totp: boolean; passkeys: WebAuthnCredentialsTable[]; names: ('totp' | 'webauthn')[] }> {
    const totp = await this.totp.enrolled(q, operatorId);
    const passkeys = await this.active(q, operatorId);
    return { totp, passkeys, names: [...(totp ? (['totp'] as const) : []), ...(passkeys.length > 0 ? (['webauthn'] as const) : [])] };
  }

  private descriptors(rows: WebAuthnCredentialsTable[]) {
    return rows.map((r) => ({ type: 'public-key', id: r.credential_id, transports: JSON.parse(r.transports) as string[] }));
  }

  /**
   * Proof, in `tx`, that `op` holds a factor they already have, for a change to factors: none
   * needed when they have none; else an assertion from one of their active passkeys whose signed
   * challenge `expected` accepts (it also uses up the challenge's nonce where it has its own), or
   * a current TOTP code. The passkey's counter, or the TOTP step, is moved in `tx`. A wrong proof
   * is MFA_INVALID (counted by the lockout); none at all is MFA_REQUIRED.
   */
  private async authorise(tx: Queries, op: Operator, proof: FactorProof, what: string, expected: (signed: Buffer) => Promise<boolean>, at: number): Promise<Authorisation> {
    const have = await this.factors(tx, op.operatorId);
    if (have.names.length === 0) return { by: 'none' };
    if (proof.webauthn) {
      const assertion = proof.webauthn;
      const row = have.passkeys.find((r) => r.credential_id === assertion.credentialId);
      if (!row) throw new CountersignError('MFA_INVALID', `${what}: that passkey is not one of your active ones`, { factor: 'webauthn' });
      const rp = this.relyingParty;
      let result: { signCount: number; uv: boolean };
      try {
        const clientDataJSON = fromB64url(assertion.clientDataJSON);
        if (!(await expected(fromB64url(challengeOf(clientDataJSON))))) throw new CountersignError('MFA_INVALID', `${what}: the assertion answers no challenge given for this change (or it expired or was used)`, { factor: 'webauthn' });
        result = verifyAssertion({ clientDataJSON, authenticatorData: fromB64url(assertion.authenticatorData), signature: fromB64url(assertion.signature) }, fromB64url(row.public_key), {
          origins: rp.origins,
          rpId: rp.id,
          requireUserVerification: false,
          challenge: () => {},
        });
      } catch (err) {
        if (err instanceof WebAuthnError) throw new CountersignError('MFA_INVALID', `${what}: the assertion does not verify: ${err.message}`, { factor: 'webauthn', reason: err.reason });
        throw err;
      }
      if (!counterOk(Number(row.sign_count), result.signCount)) {
        throw new CountersignError('MFA_INVALID', `${what}: ${cloneMessage(result.signCount, Number(row.sign_count))}`, { factor: 'webauthn', reason: 'counter', credentialId: row.credential_id });
      }
      const next = { ...row, sign_count: result.signCount, last_used_at: at };
      if (!(await tx.webauthn.useCredential(row.id, Number(row.sign_count), { sign_count: result.signCount, last_used_at: at, mac: this.mac(next) }))) {
        throw new CountersignError('MFA_INVALID', `${what}: that assertion was already used; ask for a new challenge`, { factor: 'webauthn' });
      }
      return { by: 'webauthn', credential: row.id };
    }
    if (proof.totp !== undefined) {
      if (!have.totp) throw new CountersignError('MFA_INVALID', `${what}: you have no confirmed TOTP enrolment; prove it with a passkey instead`, { factor: 'totp' });
      const { fact, step } = await this.totp.check(tx, op, proof.totp, at);
      if (fact === 'replayed') throw new CountersignError('MFA_INVALID', `${what}: that TOTP code was already used; wait for the next one`, { factor: 'totp' });
      if (fact !== 'valid' || step === null) throw new CountersignError('MFA_INVALID', `${what}: that TOTP code is not valid now`, { factor: 'totp' });
      if (!(await this.totp.use(tx, op.operatorId, step))) throw new CountersignError('MFA_INVALID', `${what}: that TOTP code was already used; wait for the next one`, { factor: 'totp' });
      return { by: 'totp' };
    }
    const how = [...(have.totp ? ['a current TOTP code (totp)'] : []), ...(have.passkeys.length > 0 ? ['an assertion from one of your passkeys (webauthn)'] : [])].join(' or ');
    throw new CountersignError('MFA_REQUIRED', `${what} needs proof of a factor you already have: ${how}`, { factors: have.names });
  }

  /**
   * A TOTP enrolment confirmed beside a passkey (guard/service.ts confirmTotp calls this in its
   * transaction): the passkey must say yes, over a `totp` challenge (`totpOptions`). An operator
   * with no active passkey needs nothing here (a confirmed TOTP cannot be re-enrolled at all).
   */
  async authoriseTotp(tx: Queries, op: Operator, proof: FactorProof, at: number): Promise<Authorisation> {
    if ((await this.active(tx, op.operatorId)).length === 0) return { by: 'none' };
    return this.authorise(tx, op, { webauthn: proof.webauthn }, 'enrolling TOTP beside your passkey', async (signed) => {
      if (signed.length !== NONCE_BYTES + 32) return false;
      const nonce = signed.subarray(0, NONCE_BYTES);
      const c = await tx.webauthn.challenge(nonce.toString('hex'));
      if (!c || c.purpose !== 'totp' || c.operator_id !== op.operatorId || c.used_at !== null || Number(c.expires_at) <= at) return false;
      return sameBytes(signed, totpChallenge(nonce, op.operatorId, Number(c.expires_at))) && (await tx.webauthn.useChallenge(nonce.toString('hex'), at));
    }, at);
  }

  /** What confirming a TOTP enrolment needs from you: `stepUp` null (no active passkey), or a challenge for one of them. */
  async totpOptions(by: Principal) {
    const op = requireOperator(by);
    const passkeys = await this.active(this.store, op.operatorId);
    if (passkeys.length === 0) return { stepUp: null };
    const rp = this.relyingParty;
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    await this.store.transaction((tx) => tx.webauthn.insertChallenge({ nonce: nonce.toString('hex'), operator_id: op.operatorId, purpose: 'totp', request_id: null, payload_hash: null, verdict: null, expires_at: expiresAt, used_at: null, created_at: at }));
    return {
      stepUp: {
        factors: ['webauthn' as const],
        webauthn: { challenge: b64url(totpChallenge(nonce, op.operatorId, expiresAt)), rpId: rp.id, allowCredentials: this.descriptors(passkeys), userVerification: 'preferred', timeout: CHALLENGE_TTL_MS, expiresAt: new Date(expiresAt).toISOString() },
      },
    };
  }

  /** Runs a change to factors under the step-up lockout (a proof reserves an attempt; a wrong one stays counted), auditing a suspected clone after the rollback. */
  async underLockout<T>(op: Operator, proof: FactorProof, run: () => Promise<T>): Promise<T> {
    const attempt = proof.totp !== undefined || proof.webauthn !== undefined ? await this.lockout.begin(op) : null;
    try {
      const out = await run();
      await attempt?.settle('good');
      return out;
    } catch (err) {
      await attempt?.settle(lockoutOutcome(err));
      const details = err instanceof CountersignError ? (err.details as { reason?: unknown; credentialId?: unknown } | undefined) : undefined;
      if (details?.reason === 'counter' && typeof details.credentialId === 'string') await this.auditClone(op, null, details.credentialId, (err as Error).message);
      throw err;
    }
  }

  // ---- enrolment ----

  async registrationOptions(by: Principal) {
    const op = requireOperator(by);
    const rp = this.relyingParty;
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    const have = await this.factors(this.store, op.operatorId);
    const existing = (await this.store.webauthn.credentialsOf(op.operatorId)).filter((r) => r.revoked_at === null);
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
      excludeCredentials: this.descriptors(existing),
      expiresAt: new Date(expiresAt).toISOString(),
      /**
       * Proof the enrolment needs (null: none, the operator has no factor yet): send `totp`, or
       * `webauthn` = an assertion (navigator.credentials.get with these options) from an active passkey.
       */
      stepUp:
        have.names.length === 0
          ? null
          : {
              factors: have.names,
              webauthn:
                have.passkeys.length === 0
                  ? null
                  : { challenge: b64url(enrolProofChallenge(nonce, op.operatorId, expiresAt)), rpId: rp.id, allowCredentials: this.descriptors(have.passkeys), userVerification: 'preferred', timeout: CHALLENGE_TTL_MS },
            },
    };
  }

  async register(by: Principal, body: WebAuthnRegistration) {
    const op = requireOperator(by);
    const rp = this.relyingParty;
    const clientDataJSON = fromB64url(body.clientDataJSON);
    const proof: FactorProof = { totp: body.totp, webauthn: body.webauthn };
    return this.underLockout(op, proof, () => this.store.transaction(async (tx) => {
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
      // A factor they already have must say yes (a stolen token or session alone adds no key).
      const expiresAt = Number(row.expires_at);
      const authorised = await this.authorise(tx, op, proof, 'adding a passkey', async (signed) => sameBytes(signed, enrolProofChallenge(Buffer.from(nonce, 'hex'), op.operatorId, expiresAt)), at);
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
        suspended_at: null,
        mac: '',
      };
      record.mac = this.mac(record);
      await tx.webauthn.insertCredential(record);
      await this.writer.append(tx, [audit('webauthn_enrolled', null, actorOf(op), { operatorId: op.operatorId, credential: record.id, name: record.name, algorithm: registered.alg === -7 ? 'ES256' : 'RS256', attestation: registered.fmt, userVerified: registered.uv, authorisedBy: authorised.by, ...(authorised.by === 'webauthn' ? { authorisingCredential: authorised.credential } : {}) }, at)]);
      return this.view(record);
    }));
  }

  /** The credentials of `ref` (`me`, or another operator for an admin). */
  async list(by: Principal, ref: string) {
    const op = requireOperator(by);
    const target = await operatorRef(this.store, by, ref);
    if (target.id !== op.operatorId) requireAdmin(op);
    return { operatorId: target.id, operator: target.name, credentials: (await this.store.webauthn.credentialsOf(target.id)).map((r) => this.view(r)) };
  }

  /**
   * A challenge for revoking credential `id` of `ref` with a passkey of the caller's (the owner's,
   * or the revoking admin's): bound to who revokes, whose and which, single use, 2 minutes.
   * `stepUp` null: the caller has no factor, so none is asked for.
   */
  async revokeOptions(by: Principal, ref: string, id: string) {
    const op = requireOperator(by);
    const target = await operatorRef(this.store, by, ref);
    if (target.id !== op.operatorId) requireAdmin(op);
    const row = await this.store.webauthn.credential(id);
    if (!row || row.operator_id !== target.id) throw new CountersignError('NOT_FOUND', `operator ${target.name} has no WebAuthn credential ${id}`);
    const have = await this.factors(this.store, op.operatorId);
    if (have.names.length === 0) return { stepUp: null };
    if (have.passkeys.length === 0) return { stepUp: { factors: have.names, webauthn: null } };
    const rp = this.relyingParty;
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    await this.store.transaction((tx) => tx.webauthn.insertChallenge({ nonce: nonce.toString('hex'), operator_id: op.operatorId, purpose: 'revoke', request_id: null, payload_hash: null, verdict: null, expires_at: expiresAt, used_at: null, created_at: at }));
    return {
      stepUp: {
        factors: have.names,
        webauthn: { challenge: b64url(revokeChallenge(nonce, op.operatorId, target.id, id, expiresAt)), rpId: rp.id, allowCredentials: this.descriptors(have.passkeys), userVerification: 'preferred', timeout: CHALLENGE_TTL_MS, expiresAt: new Date(expiresAt).toISOString() },
      },
    };
  }

  /**
   * Revokes one credential: its owner, or an admin. Whoever revokes proves a factor of their own
   * when they have one (the owner: any remaining factor, or this passkey itself; an admin: theirs),
   * so a stolen token cannot strip a factor either. Audited with the factor that authorised it.
   */
  async revoke(by: Principal, ref: string, id: string, proof: FactorProof = {}) {
    const op = requireOperator(by);
    const target = await operatorRef(this.store, by, ref);
    if (target.id !== op.operatorId) requireAdmin(op);
    return this.underLockout(op, proof, () =>
      this.store.transaction(async (tx) => {
        const at = this.now();
        const found = await tx.webauthn.credential(id);
        if (!found || found.operator_id !== target.id) throw new CountersignError('NOT_FOUND', `operator ${target.name} has no WebAuthn credential ${id}`);
        if (found.revoked_at !== null) throw new CountersignError('ILLEGAL_TRANSITION', 'that credential is already revoked');
        const authorised = await this.authorise(tx, op, proof, 'revoking a passkey', async (signed) => {
          if (signed.length !== NONCE_BYTES + 32) return false;
          const nonce = signed.subarray(0, NONCE_BYTES);
          const c = await tx.webauthn.challenge(nonce.toString('hex'));
          if (!c || c.purpose !== 'revoke' || c.operator_id !== op.operatorId || c.used_at !== null || Number(c.expires_at) <= at) return false;
          return sameBytes(signed, revokeChallenge(nonce, op.operatorId, target.id, id, Number(c.expires_at))) && (await tx.webauthn.useChallenge(nonce.toString('hex'), at));
        }, at);
        // Read again: the proof may have moved this very credential's counter.
        const row = (await tx.webauthn.credential(id))!;
        const revoked = { ...row, revoked_at: at, revoked_by: op.operatorId };
        if (!(await tx.webauthn.revokeCredential(id, at, op.operatorId, this.mac(revoked)))) throw new CountersignError('ILLEGAL_TRANSITION', 'that credential is already revoked');
        await this.writer.append(tx, [audit('webauthn_revoked', null, actorOf(op), { operatorId: target.id, operator: target.name, credential: id, authorisedBy: authorised.by }, at)]);
        return this.view({ ...revoked, mac: this.mac(revoked) });
      }),
    );
  }

  /**
   * After an admin replaced or revoked another operator's token (or `admin recover`): the
   * passkeys that operator enrolled since `since` (when the token now replaced was issued) are
   * revoked in `tx`, audited, because whoever held that token could have enrolled them. Returns
   * the drafts to append. Passkeys enrolled earlier stay (the old token did not add them).
   */
  async revokeEnrolledSince(tx: Queries, actor: AuditActor, operatorId: string, operatorName: string, since: number, reason: string, at: number): Promise<AuditDraft[]> {
    const entries: AuditDraft[] = [];
    for (const row of await tx.webauthn.credentialsOf(operatorId)) {
      if (row.revoked_at !== null || Number(row.created_at) < since) continue;
      if (await tx.webauthn.revokeCredential(row.id, at, actor.id, this.mac({ ...row, revoked_at: at, revoked_by: actor.id }))) {
        entries.push(audit('webauthn_revoked', null, actor, { operatorId, operator: operatorName, credential: row.id, authorisedBy: 'token_replaced', reason }, at));
      }
    }
    return entries;
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
    if (credentials.length === 0) throw new CountersignError('MFA_REQUIRED', 'you have no enrolled passkey or security key (or it is suspended); enrol one in the dashboard (Settings)', { factor: 'webauthn' });
    // `mfa: webauthn` refuses an assertion without user verification (assertionFact): ask the authenticator for it.
    const assessment = (typeof request.assessment === 'string' ? JSON.parse(request.assessment) : request.assessment) as { mfaRequired?: boolean; webauthnRequired?: boolean } | null;
    const uvRequired = assessment?.mfaRequired === true && assessment.webauthnRequired === true;
    const at = this.now();
    const nonce = randomBytes(NONCE_BYTES);
    const expiresAt = at + CHALLENGE_TTL_MS;
    await this.store.transaction((tx) => tx.webauthn.insertChallenge({ nonce: nonce.toString('hex'), operator_id: op.operatorId, purpose: 'approve', request_id: requestId, payload_hash: body.payloadHash, verdict: body.verdict, expires_at: expiresAt, used_at: null, created_at: at }));
    return {
      challenge: b64url(approvalChallenge(nonce, requestId, body.payloadHash, body.verdict, expiresAt)),
      rpId: rp.id,
      allowCredentials: this.descriptors(credentials),
      userVerification: uvRequired ? 'required' : 'preferred',
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
    if (row.suspended_at !== null) return { fact: 'not_enrolled', reason: { code: 'suspended', message: 'that credential is suspended (its sign counter went back: a suspected clone); revoke it and enrol a new one' } };
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
        return { fact: 'invalid', reason: { code: 'counter', message: cloneMessage(result.signCount, Number(row.sign_count)) } };
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

  /**
   * After a refused vote (or change to factors) rolled back: a counter gone back suspends the
   * credential (a MACed change in its own transaction: it approves and proves nothing more until
   * revoked and replaced) and is written on the trail as a suspected clone.
   */
  async auditClone(by: Operator, requestId: string | null, credentialId: string, message: string): Promise<void> {
    try {
      await this.store.transaction(async (tx) => {
        const at = this.now();
        const row = await tx.webauthn.credentialById(credentialId);
        let suspended = false;
        if (row && row.operator_id === by.operatorId && this.authentic(row) && row.revoked_at === null && row.suspended_at === null) {
          suspended = await tx.webauthn.suspendCredential(row.id, at, this.mac({ ...row, suspended_at: at }));
        }
        await this.writer.append(tx, [audit('webauthn_clone_suspected', requestId, actorOf(by), { operatorId: by.operatorId, credential: row?.id ?? null, reason: message, suspended }, at)]);
      });
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
