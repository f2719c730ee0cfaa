/**
 * Red-team review of WebAuthn step-up (issue 20), server side, on SQLite and PostgreSQL. Each test
 * here fails on branch `webauthn` and demonstrates one defect (F-numbers: the review report).
 * Assertions are forged with the software authenticator (support/soft-authenticator.ts).
 */
import { CountersignError, CreateRequestBody, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN, DEFAULT_POLICY_YAML, payloadKey } from '@countersign/core';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { payloadHashOf } from '../src/engine/decisions.ts';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { relyingPartyOf } from '../src/guard/webauthn.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';
import { cbor, SoftAuthenticator } from './support/soft-authenticator.ts';

const ORIGIN = 'http://localhost:8080';
const RP = 'localhost';
const POLICY = `
levels:
  critical: { sla: 5m, autoApprove: false, mfa: webauthn, approvals: 1 }
  high: { sla: 15m, autoApprove: false, mfa: true, approvals: 1 }
`;
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

async function refusal(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  return null;
}

/** A "security key" whose COSE key is whatever the test says (the registration is otherwise well formed). */
class CoseOverride extends SoftAuthenticator {
  constructor(private readonly key: Buffer) {
    super({ origin: ORIGIN, rpId: RP });
  }
  override cose(): Buffer {
    return this.key;
  }
}

describe.each(ENGINES)('review: WebAuthn holes ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let admin: Principal;
  let agent: Principal;
  let n = 0;

  const wa = () => engine.guard.webauthn;
  const operator = async (roles: ('director' | 'admin' | 'lead')[] = ['director']) => (await engine.authenticate((await engine.createOperator(admin, { name: `op${++n}`, roles })).token))!;
  const enrol = async (by: Principal, k: SoftAuthenticator) => wa().register(by, k.register((await wa().registrationOptions(by)).challenge));
  const request = async (riskLevel: 'critical' | 'high', path = `/srv/${++n}.db`) => (await engine.createRequest(agent, CreateRequestBody.parse({ action: 'delete_data', args: { path }, confidence: 0.99, riskLevel }))).request;
  const hashOf = (r: { action: string; args: Record<string, unknown> }) => payloadHashOf(payloadKey(r.action, r.args as never));
  const challenge = async (by: Principal, id: string, payloadHash: string) => (await wa().approvalChallenge(by, id, { verdict: 'approve', payloadHash })).challenge;
  /** One dashboard approval: a fresh challenge, the authenticator's assertion over it, the vote. */
  const approve = async (by: Principal, r: { id: string; action: string; args: Record<string, unknown> }, k: SoftAuthenticator, opts: Parameters<SoftAuthenticator['assert']>[1] = {}) => {
    const h = hashOf(r);
    const matchCode = (r as { assessment?: { riskLevel?: string } }).assessment?.riskLevel === 'critical' ? await engine.guard.matchCode(r.id) : undefined;
    return engine.review(by, r.id, { verdict: 'approve', ...(matchCode ? { matchCode } : {}), seenPayloadHash: h, webauthn: k.assert(await challenge(by, r.id, h), opts) });
  };
  const key = () => new SoftAuthenticator({ origin: ORIGIN, rpId: RP });

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS, serverSecret: TEST_SERVER_SECRET });
    await engine.activatePolicy(POLICY, 'test');
    engine.guard.webauthn.useRelyingParty(relyingPartyOf('http://127.0.0.1:8080'));
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
    agent = (await engine.authenticate(boot.agentKey))!;
  });
  afterAll(async () => {
    await engine?.close();
    await database?.drop();
  });

  it('F1a: a stolen token (or session) alone cannot add a second passkey to an operator who has one', async () => {
    const victim = await operator();
    await enrol(victim, key());
    // The thief has the bearer token, not the victim's authenticator: no step-up is asked for.
    const thief = key();
    const e = await refusal(enrol(victim, thief));
    expect(e).toBeInstanceOf(CountersignError);
    expect((await wa().list(victim, 'me')).credentials).toHaveLength(1);
  });

  it('F1b: a stolen token alone cannot turn `mfa: true` into no step-up, by enrolling its own passkey beside the victim’s TOTP', async () => {
    const victim = await operator();
    const secret = (await engine.guard.enrolTotp(victim)).secret;
    await engine.guard.confirmTotp(victim, totpCode(secret, Date.now()));
    // TOTP cannot be re-enrolled by a token alone (ILLEGAL_TRANSITION); a passkey can be added, then used instead of the code.
    const r = await request('high');
    const attack = (async () => {
      const thief = key();
      await enrol(victim, thief);
      return approve(victim, r, thief);
    })();
    expect(await refusal(attack)).toBeInstanceOf(CountersignError);
    expect((await engine.getRequest(admin, r.id)).status).toBe('pending');
  });

  it('F2: a stolen token alone cannot revoke the operator’s passkey (removing a factor needs step-up too)', async () => {
    const victim = await operator();
    const cred = await enrol(victim, key());
    const e = await refusal(wa().revoke(victim, 'me', cred.id));
    expect(e).toBeInstanceOf(CountersignError);
    expect((await wa().list(victim, 'me')).credentials[0]!.revokedAt).toBeNull();
  });

  it('F3: once a clone is detected (counter went back), the credential stops approving; the clone cannot just count higher', async () => {
    const victim = await operator();
    const genuine = key();
    await enrol(victim, genuine);
    const clone = genuine.clone();
    // The attacker's clone runs ahead of the genuine key: undetectable on its own.
    clone.counter += 100;
    expect((await approve(victim, await request('critical'), clone)).status).toBe('approved');
    // The genuine key's next use has a counter behind: refused, audited as a suspected clone.
    const r2 = await request('critical');
    const detected = await refusal(approve(victim, r2, genuine));
    expect((detected as CountersignError).message).toMatch(/cloned/);
    expect((await engine.store.listAudit({ type: 'webauthn_clone_suspected', limit: 100 })).length).toBeGreaterThan(0);
    // Nothing marks the credential: the clone goes on approving with counter + 1.
    const r3 = await request('critical');
    expect(await refusal(approve(victim, r3, clone))).toBeInstanceOf(CountersignError);
    expect((await engine.getRequest(admin, r3.id)).status).toBe('pending');
  });

  it('F4: an admin change that loosens the gate, at a `high: mfa: webauthn` policy, is not approved by a TOTP code', async () => {
    const db2 = make();
    const e2 = await Engine.open({ connection: await connect(db2.url), guard: NO_LIMITS, serverSecret: TEST_SERVER_SECRET });
    try {
      await e2.activatePolicy(DEFAULT_POLICY_YAML.replace('high:     { sla: 15m, autoApprove: false }', 'high:     { sla: 15m, autoApprove: false, mfa: webauthn }'), 'test');
      e2.guard.webauthn.useRelyingParty(relyingPartyOf('http://127.0.0.1:8080'));
      const boot = (await e2.bootstrap())!;
      const root = (await e2.authenticate(boot.adminToken))!;
      await e2.createAgentKey(root, 'billing-bot');
      const independent = async (who: string) => {
        const made = await e2.createOperator(root, { name: who, roles: ['admin'] });
        return (await e2.authenticate((await e2.credentials.rotateToken((await e2.authenticate(made.token))!, 'me')).token))!;
      };
      const bob = await independent('bob');
      const carol = await independent('carol');
      await e2.agentConfigs.put(root, 'billing-bot', { enabled: false });
      const proposed = (await e2.agentConfigs.put(bob, 'billing-bot', { enabled: true })) as { status: string; requestId: string };
      expect(proposed.status).toBe('pending_approval');
      // The high level says WebAuthn only; the four-eyes request is at high risk, yet its assessment says TOTP will do.
      expect((await e2.getRequest(carol, proposed.requestId)).assessment).toMatchObject({ riskLevel: 'high', mfaRequired: true });
      const secret = (await e2.guard.enrolTotp(carol)).secret;
      await e2.guard.confirmTotp(carol, totpCode(secret, Date.now() - 30_000));
      const voted = await refusal(e2.review(carol, proposed.requestId, { verdict: 'approve', totp: totpCode(secret, Date.now()) }));
      expect(voted).toBeInstanceOf(CountersignError);
      expect((voted as CountersignError).code).toBe('MFA_REQUIRED');
    } finally {
      await e2.close();
      await db2.drop();
    }
  });

  it('F6: a COSE key whose point is not on P-256 is a clear VALIDATION_FAILED, not an internal error', async () => {
    const op = await operator();
    const bad = new CoseOverride(cbor(new Map<number, number | Buffer>([[1, 2], [3, -7], [-1, 1], [-2, Buffer.alloc(32, 1)], [-3, Buffer.alloc(32, 2)]])));
    const e = await refusal(enrol(op, bad));
    expect(e).toBeInstanceOf(CountersignError);
    expect((e as CountersignError).code).toBe('VALIDATION_FAILED');
  });

  it('F7: an RS256 key with public exponent 1 is refused at enrolment: with it, a signature made from public data alone approves', async () => {
    const op = await operator();
    const modulus = Buffer.alloc(256, 0xff);
    const weak = new CoseOverride(cbor(new Map<number, number | Buffer>([[1, 3], [3, -257], [-1, modulus], [-2, Buffer.from([1])]])));
    const r = await request('critical');
    const attack = (async () => {
      await enrol(op, weak);
      const h = hashOf(r);
      const a = weak.assert(await challenge(op, r.id, h));
      // s^1 mod n = s: the "signature" is the PKCS #1 v1.5 encoding of the digest, no private key involved.
      const digest = createHash('sha256').update(Buffer.concat([Buffer.from(a.authenticatorData, 'base64url'), createHash('sha256').update(Buffer.from(a.clientDataJSON, 'base64url')).digest()])).digest();
      const t = Buffer.concat([Buffer.from('3031300d060960864801650304020105000420', 'hex'), digest]);
      const em = Buffer.concat([Buffer.from([0, 1]), Buffer.alloc(256 - 3 - t.length, 0xff), Buffer.from([0]), t]);
      return engine.review(op, r.id, { verdict: 'approve', matchCode: await engine.guard.matchCode(r.id), seenPayloadHash: h, webauthn: { ...a, signature: em.toString('base64url') } });
    })();
    expect(await refusal(attack)).toBeInstanceOf(CountersignError);
    expect((await engine.getRequest(admin, r.id)).status).toBe('pending');
  });

  it('F8: the challenge for a vote that policy makes require user verification asks the authenticator for it', async () => {
    const op = await operator();
    await enrol(op, key());
    const r = await request('critical');
    const options = await wa().approvalChallenge(op, r.id, { verdict: 'approve', payloadHash: hashOf(r) });
    // `mfa: webauthn` refuses an assertion without UV (webauthn.ts assertionFact); `preferred` lets a key skip it.
    expect(options.userVerification).toBe('required');
  });
});
