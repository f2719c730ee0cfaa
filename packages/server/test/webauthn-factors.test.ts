/**
 * Changing an operator's factors (review F1–F3 of WebAuthn step-up), on both databases: adding a
 * passkey beside a factor takes proof of it (a TOTP code, or an assertion bound to that
 * registration's nonce), wrong proofs count toward the step-up lockout; revoking takes proof from
 * whoever revokes (bound to that credential); a counter gone back suspends the credential; an
 * admin replacing another's token revokes the passkeys enrolled while it was live. Real HTTP for
 * the revoke route's optional body.
 */
import { CountersignError, DEFAULT_APPROVER_LIMITS, DEFAULT_COOLDOWN } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { totpCode } from '../src/guard/totp.ts';
import { relyingPartyOf } from '../src/guard/webauthn.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';
import { SoftAuthenticator } from './support/soft-authenticator.ts';
import { serve, type ServerType } from '@hono/node-server';
import type { AddressInfo } from 'node:net';

const ORIGIN = 'http://localhost:8080';
const NO_LIMITS = { approverLimits: { ...DEFAULT_APPROVER_LIMITS, perHour: 1e9, perDay: 1e9 }, cooldown: { ...DEFAULT_COOLDOWN, threshold: 1e9 } };

async function refusal(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CountersignError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe.each(ENGINES)('WebAuthn: changing factors ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  let admin: Principal;
  let n = 0;
  const wa = () => engine.guard.webauthn;
  const key = () => new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
  const operator = async (roles: ('director' | 'admin')[] = ['director']) => {
    const made = await engine.createOperator(admin, { name: `f${++n}`, roles });
    return { op: (await engine.authenticate(made.token))!, token: made.token, name: `f${n}` };
  };
  const withTotp = async (op: Principal) => {
    const secret = (await engine.guard.enrolTotp(op)).secret;
    await engine.guard.confirmTotp(op, totpCode(secret, Date.now() - 30_000));
    return secret;
  };
  const audits = async (type: string) => (await engine.store.listAudit({ type, limit: 200 })).map((e) => JSON.parse(e.data) as Record<string, unknown>);

  beforeAll(async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), guard: NO_LIMITS, serverSecret: TEST_SERVER_SECRET });
    await engine.activatePolicy('levels:\n  critical: { sla: 5m, autoApprove: false, mfa: webauthn, approvals: 1 }\n', 'test');
    wa().useRelyingParty(relyingPartyOf('http://127.0.0.1:8080'));
    const boot = (await engine.bootstrap())!;
    admin = (await engine.authenticate(boot.adminToken))!;
  });
  afterAll(async () => {
    await engine?.close();
    await database?.drop();
  });

  it('adding a passkey beside TOTP takes a current code; a wrong one is MFA_INVALID and counts toward the lockout', async () => {
    const { op } = await operator();
    const secret = await withTotp(op);
    const options = await wa().registrationOptions(op);
    expect(options.stepUp).toEqual({ factors: ['totp'], webauthn: null });
    const k = key();
    for (let i = 0; i < 5; i++) {
      const options2 = await wa().registrationOptions(op);
      expect((await refusal(wa().register(op, { ...k.register(options2.challenge), totp: '000000' }))).code).toBe('MFA_INVALID');
    }
    const locked = await refusal(wa().register(op, { ...k.register(options.challenge), totp: totpCode(secret, Date.now()) }));
    expect(locked.code).toBe('MFA_LOCKED');
    expect((await wa().list(op, 'me')).credentials).toHaveLength(0);

    const { op: op2 } = await operator();
    const secret2 = await withTotp(op2);
    const o = await wa().registrationOptions(op2);
    expect((await wa().register(op2, { ...k.register(o.challenge), totp: totpCode(secret2, Date.now()) })).intact).toBe(true);
    expect((await audits('webauthn_enrolled')).find((d) => d.operatorId === (op2 as { operatorId: string }).operatorId)).toMatchObject({ authorisedBy: 'totp' });
  });

  it('confirming a TOTP beside a passkey takes an assertion from it (a stolen token cannot add a code factor either)', async () => {
    const { op } = await operator();
    const k = key();
    await wa().register(op, k.register((await wa().registrationOptions(op)).challenge));
    const secret = (await engine.guard.enrolTotp(op)).secret;
    const bare = await refusal(engine.guard.confirmTotp(op, totpCode(secret, Date.now())));
    expect(bare.code).toBe('MFA_REQUIRED');
    expect(bare.message).toMatch(/enrolling TOTP beside your passkey needs proof/);
    expect((await engine.guard.totpStatus(op)).enrolled).toBe(false);
    // A revoke or enrolment challenge is not a TOTP challenge.
    const reg = await wa().registrationOptions(op);
    expect((await refusal(engine.guard.confirmTotp(op, totpCode(secret, Date.now()), { webauthn: k.assert(reg.stepUp!.webauthn!.challenge) }))).code).toBe('MFA_INVALID');
    const { stepUp } = await wa().totpOptions(op);
    await engine.guard.confirmTotp(op, totpCode(secret, Date.now()), { webauthn: k.assert(stepUp!.webauthn.challenge) });
    expect((await engine.guard.totpStatus(op)).enrolled).toBe(true);
    expect((await audits('totp_enrolled')).at(-1)).toMatchObject({ operatorId: (op as { operatorId: string }).operatorId, authorisedBy: 'webauthn' });
  });

  it('a passkey proof is bound to its registration: one made for another registration, or the registration challenge itself, is refused', async () => {
    const { op } = await operator();
    const first = key();
    const o1 = await wa().registrationOptions(op);
    await wa().register(op, first.register(o1.challenge));
    const a = await wa().registrationOptions(op);
    const b = await wa().registrationOptions(op);
    const second = key();
    // Proof made over b's step-up challenge, offered with a's registration.
    expect((await refusal(wa().register(op, { ...second.register(a.challenge), webauthn: first.assert(b.stepUp!.webauthn!.challenge) }))).message).toMatch(/no challenge given for this change/);
    // An assertion over the registration challenge itself is not the proof challenge.
    expect((await refusal(wa().register(op, { ...second.register(a.challenge), webauthn: first.assert(a.challenge) }))).code).toBe('MFA_INVALID');
    // Another key than theirs proves nothing.
    expect((await refusal(wa().register(op, { ...second.register(a.challenge), webauthn: key().assert(a.stepUp!.webauthn!.challenge) }))).message).toMatch(/not one of your active/);
    const added = await wa().register(op, { ...second.register(a.challenge), webauthn: first.assert(a.stepUp!.webauthn!.challenge) });
    expect(added.intact).toBe(true);
    expect((await audits('webauthn_enrolled')).at(-1)).toMatchObject({ authorisedBy: 'webauthn', credential: added.id });
  });

  it('revoking: the owner proves with the passkey (bound to that credential); an admin with a factor proves their own', async () => {
    const { op, name } = await operator();
    const k = key();
    const cred = await wa().register(op, k.register((await wa().registrationOptions(op)).challenge));
    const o = await wa().registrationOptions(op);
    const k2 = key();
    const cred2 = await wa().register(op, { ...k2.register(o.challenge), webauthn: k.assert(o.stepUp!.webauthn!.challenge) });
    // A challenge for revoking cred2 does not revoke cred.
    const forCred2 = await wa().revokeOptions(op, 'me', cred2.id);
    expect((await refusal(wa().revoke(op, 'me', cred.id, { webauthn: k.assert(forCred2.stepUp!.webauthn!.challenge) }))).code).toBe('MFA_INVALID');
    const forCred = await wa().revokeOptions(op, 'me', cred.id);
    expect((await wa().revoke(op, 'me', cred.id, { webauthn: k.assert(forCred.stepUp!.webauthn!.challenge) })).revokedAt).not.toBeNull();
    expect((await audits('webauthn_revoked')).at(-1)).toMatchObject({ credential: cred.id, authorisedBy: 'webauthn' });

    // An admin who has TOTP revokes another's passkey with their own code.
    const { op: boss } = await operator(['admin']);
    const secret = await withTotp(boss);
    expect((await wa().revokeOptions(boss, name, cred2.id)).stepUp).toEqual({ factors: ['totp'], webauthn: null });
    expect((await refusal(wa().revoke(boss, name, cred2.id))).code).toBe('MFA_REQUIRED');
    expect((await wa().revoke(boss, name, cred2.id, { totp: totpCode(secret, Date.now()) })).revokedAt).not.toBeNull();
    expect((await audits('webauthn_revoked')).at(-1)).toMatchObject({ credential: cred2.id, authorisedBy: 'totp' });
  });

  it('a counter gone back suspends the credential (MACed, listed); with no other factor it is revocable as it is, then a new one enrols', async () => {
    const { op } = await operator();
    const genuine = key();
    const cred = await wa().register(op, genuine.register((await wa().registrationOptions(op)).challenge));
    const clone = genuine.clone();
    // The clone proves a registration first (counter 1), then the genuine key's proof (counter 1 again) is refused and suspends it.
    const o = await wa().registrationOptions(op);
    await wa().register(op, { ...key().register(o.challenge), webauthn: clone.assert(o.stepUp!.webauthn!.challenge) });
    const o2 = await wa().registrationOptions(op);
    const detected = await refusal(wa().register(op, { ...key().register(o2.challenge), webauthn: genuine.assert(o2.stepUp!.webauthn!.challenge) }));
    expect(detected.message).toMatch(/may have been cloned \(or two uses of it ran out of order\)/);
    const listed = (await wa().list(op, 'me')).credentials.find((c) => c.id === cred.id)!;
    expect(listed).toMatchObject({ intact: true, revokedAt: null });
    expect(listed.suspendedAt).not.toBeNull();
    expect((await audits('webauthn_clone_suspected')).at(-1)).toMatchObject({ credential: cred.id, suspended: true });
    // The suspended one proves nothing more (the clone neither).
    const o3 = await wa().registrationOptions(op);
    expect(o3.stepUp!.webauthn!.allowCredentials.map((c) => c.id)).not.toContain(cred.credentialId);
    expect((await refusal(wa().register(op, { ...key().register(o3.challenge), webauthn: clone.assert(o3.stepUp!.webauthn!.challenge) }))).message).toMatch(/not one of your active/);
  });

  it('a suspended passkey with no other factor left is revoked without proof (it approves nothing); with TOTP left, the code is asked', async () => {
    const { op } = await operator();
    const genuine = key();
    const cred = await wa().register(op, genuine.register((await wa().registrationOptions(op)).challenge));
    const clone = genuine.clone();
    const o = await wa().registrationOptions(op);
    const extra = key();
    const extraCred = await wa().register(op, { ...extra.register(o.challenge), webauthn: clone.assert(o.stepUp!.webauthn!.challenge) });
    const o2 = await wa().registrationOptions(op);
    await refusal(wa().register(op, { ...key().register(o2.challenge), webauthn: genuine.assert(o2.stepUp!.webauthn!.challenge) }));
    // `extra` is still active: revoking the suspended one needs it.
    expect((await refusal(wa().revoke(op, 'me', cred.id))).code).toBe('MFA_REQUIRED');
    const r = await wa().revokeOptions(op, 'me', extraCred.id);
    expect((await wa().revoke(op, 'me', extraCred.id, { webauthn: extra.assert(r.stepUp!.webauthn!.challenge) })).revokedAt).not.toBeNull();
    // Now nothing active is left: the suspended one goes without proof, and a new passkey enrols as a first one.
    expect((await wa().revoke(op, 'me', cred.id)).revokedAt).not.toBeNull();
    expect((await audits('webauthn_revoked')).at(-1)).toMatchObject({ credential: cred.id, authorisedBy: 'none' });
    expect((await wa().register(op, key().register((await wa().registrationOptions(op)).challenge))).intact).toBe(true);
  });

  it('an admin replacing another operator’s token revokes the passkeys enrolled while it was live; rotating your own keeps yours', async () => {
    const { op, name } = await operator();
    const k = key();
    const cred = await wa().register(op, k.register((await wa().registrationOptions(op)).challenge));
    const rotated = await engine.credentials.rotateToken(admin, name);
    const after = (await wa().list(admin, name)).credentials.find((c) => c.id === cred.id)!;
    expect(after.revokedAt).not.toBeNull();
    expect((await audits('webauthn_revoked')).at(-1)).toMatchObject({ credential: cred.id, authorisedBy: 'token_replaced' });
    // With the new token the operator has no factor left: a first passkey enrols as such.
    const fresh = (await engine.authenticate(rotated.token))!;
    expect((await wa().registrationOptions(fresh)).stepUp).toBeNull();
    const { op: boss, name: bossName } = await operator(['admin']);
    const bossKey = await wa().register(boss, key().register((await wa().registrationOptions(boss)).challenge));
    await engine.credentials.rotateToken(boss, 'me');
    expect((await wa().list(admin, bossName)).credentials.find((c) => c.id === bossKey.id)!.revokedAt).toBeNull();
  });

  it('admin recover of an existing operator revokes the passkeys enrolled while their replaced tokens were live', async () => {
    const { op, name } = await operator(['admin']);
    const cred = await wa().register(op, key().register((await wa().registrationOptions(op)).challenge));
    const out = await engine.credentials.recoverAdmin(name, { type: 'system', id: 'cli', name: 'admin recover' });
    expect(out.created).toBe(false);
    const fresh = (await engine.authenticate(out.token))!;
    expect((await wa().list(fresh, 'me')).credentials.find((c) => c.id === cred.id)!.revokedAt).not.toBeNull();
    expect((await audits('webauthn_revoked')).at(-1)).toMatchObject({ credential: cred.id, authorisedBy: 'token_replaced', reason: expect.stringMatching(/admin recover/) });
  });

  it('an IP address other than loopback as the dashboard address: WebAuthn says why it cannot work (COUNTERSIGN_PUBLIC_URL)', async () => {
    expect(relyingPartyOf('http://10.1.2.3:8080').unusable).toMatch(/IP address.*COUNTERSIGN_PUBLIC_URL/);
    expect(relyingPartyOf('http://[2001:db8::1]:8080').unusable).toMatch(/IP address/);
    expect(relyingPartyOf('http://[::1]:8080')).toEqual({ id: 'localhost', origins: ['http://localhost:8080'] });
    const { op } = await operator();
    wa().useRelyingParty(relyingPartyOf('http://0.0.0.0:8080'));
    try {
      const e = await refusal(wa().registrationOptions(op));
      expect(e.code).toBe('MFA_REQUIRED');
      expect(e.message).toMatch(/passkeys cannot work at http:\/\/0\.0\.0\.0:8080.*COUNTERSIGN_PUBLIC_URL/);
    } finally {
      wa().useRelyingParty(relyingPartyOf('http://127.0.0.1:8080'));
    }
  });

  it('over HTTP: DELETE takes the proof as an optional JSON body', async () => {
    const { op, token } = await operator();
    const k = key();
    const cred = await wa().register(op, k.register((await wa().registrationOptions(op)).challenge));
    const app = createApp({ engine, log: () => {} } as never);
    const server: ServerType = await new Promise((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      const bare = await fetch(`${base}/v1/operators/me/webauthn/${cred.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
      expect(bare.status).toBe(403);
      expect(((await bare.json()) as { error: { code: string } }).error.code).toBe('MFA_REQUIRED');
      const options = (await (await fetch(`${base}/v1/operators/me/webauthn/${cred.id}/challenge`, { method: 'POST', headers })).json()) as { stepUp: { webauthn: { challenge: string } } };
      const done = await fetch(`${base}/v1/operators/me/webauthn/${cred.id}`, { method: 'DELETE', headers, body: JSON.stringify({ webauthn: k.assert(options.stepUp.webauthn.challenge) }) });
      expect(done.status).toBe(200);
      expect(((await done.json()) as { revokedAt: string | null }).revokedAt).not.toBeNull();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
