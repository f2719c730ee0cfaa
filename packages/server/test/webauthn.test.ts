/**
 * WebAuthn step-up (issue 20), server side, on both databases: enrolment (none and packed self
 * attestation, ES256 and RS256), approval with an assertion whose challenge is the approval, and
 * the attacks: an assertion for request A on request B, for the original payload on a modified
 * one, a replayed assertion, a cloned authenticator (counter going back: refused and audited), a
 * revoked credential, a wrong origin or rpId, a missing UV where policy requires it, a database
 * writer winding a counter back, TOTP and the CLI refused where policy says `mfa: webauthn`, and
 * wrong assertions counting toward the step-up lockout. The assertions are built with node:crypto
 * from a software key (support/soft-authenticator.ts), in the wire format browsers send.
 */
import { sql } from 'kysely';
import { CountersignError, CreateRequestBody, diffPolicies, parsePolicy, policyForAgent } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../src/engine/principal.ts';
import { payloadHashOf } from '../src/engine/decisions.ts';
import { totpCode } from '../src/guard/totp.ts';
import { relyingPartyOf } from '../src/guard/webauthn.ts';
import { payloadKey } from '@countersign/core';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';
import { SoftAuthenticator } from './support/soft-authenticator.ts';
import { m027_webauthn } from '../src/store/migrations/027_webauthn.ts';

const ORIGIN = 'http://localhost:8080';
const POLICY = `
levels:
  critical: { sla: 5m, autoApprove: false, mfa: webauthn, approvals: 1 }
  high: { sla: 15m, autoApprove: false, mfa: true, approvals: 1 }
`;

function policyOf(text: string) {
  const r = parsePolicy(text);
  if (!r.ok) throw new Error(JSON.stringify(r));
  return r.policy;
}

async function refusal(promise: Promise<unknown>): Promise<CountersignError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CountersignError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('policy: levels.<risk>.mfa', () => {
  it('accepts webauthn and refuses anything else with a clear error', () => {
    expect(policyOf(POLICY).levels.critical).toMatchObject({ mfa: true, webauthn: true });
    expect(policyOf(POLICY).levels.high.webauthn).toBeUndefined();
    expect(JSON.stringify(parsePolicy(POLICY.replace('mfa: webauthn', 'mfa: passkey')))).toMatch(/levels\.critical\.mfa.*true, false or webauthn/);
  });

  it('policy diff names a change to or from webauthn', () => {
    const before = policyOf(POLICY.replace('mfa: webauthn', 'mfa: true'));
    const changes = diffPolicies(before, policyOf(POLICY));
    expect(changes.filter((c) => c.path === 'levels.critical.mfa')).toEqual([expect.objectContaining({ before: true, after: 'webauthn', text: expect.stringMatching(/TOTP codes are refused/) })]);
    expect(diffPolicies(policyOf(POLICY), before).find((c) => c.path === 'levels.critical.mfa')?.text).toMatch(/accepts a TOTP code again/);
  });

  it('an agent’s own `mfa: true` at a webauthn level keeps WebAuthn (per-agent settings only tighten it)', () => {
    const policy = policyOf(`${POLICY}agents:\n  bot:\n    levels:\n      critical: { mfa: true }\n`);
    expect(policyForAgent(policy, 'bot').levels.critical).toMatchObject({ mfa: true, webauthn: true });
  });
});

describe.each(ENGINES)('WebAuthn step-up ($name)', ({ name: engineName, make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let dana: Principal;
  let omar: Principal;
  let key: SoftAuthenticator;

  const critical = async (args: Record<string, unknown> = { path: '/srv/customers.db' }) =>
    (await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'delete_data', args, confidence: 0.99, riskLevel: 'critical' }))).request;
  const high = async () => (await t.engine.createRequest(t.agent, CreateRequestBody.parse({ action: 'delete_data', args: { path: '/tmp/x' }, confidence: 0.99, riskLevel: 'high' }))).request;
  const hashOf = (action: string, args: Record<string, unknown>) => payloadHashOf(payloadKey(action, args as never));
  const challenge = async (by: Principal, id: string, payloadHash: string) => (await t.engine.guard.webauthn.approvalChallenge(by, id, { verdict: 'approve', payloadHash })).challenge;
  const enrol = async (by: Principal, authenticator: SoftAuthenticator, fmt: 'none' | 'packed' = 'none') => {
    const options = await t.engine.guard.webauthn.registrationOptions(by);
    return t.engine.guard.webauthn.register(by, authenticator.register(options.challenge, { fmt }));
  };
  /** A director of their own with an enrolled key: each attack test's wrong attempts count toward its own lockout. */
  const fresh = async (name: string) => {
    const op = await t.operator(name, ['director']);
    const k = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
    await enrol(op, k);
    return { op, k };
  };
  const audits = async (type: string) => (await t.engine.store.listAudit({ type, limit: 100 })).map((e) => JSON.parse(e.data) as Record<string, unknown>);

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url, POLICY);
    t.engine.guard.webauthn.useRelyingParty(relyingPartyOf('http://127.0.0.1:8080'));
    dana = await t.operator('dana', ['director']);
    omar = await t.operator('omar', ['director']);
    key = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
  });
  afterAll(async () => {
    await t?.engine.close();
    await database?.drop();
  });

  it('a loopback listen address becomes the localhost relying party', () => {
    expect(relyingPartyOf('http://127.0.0.1:8080')).toEqual({ id: 'localhost', origins: ['http://localhost:8080'] });
    expect(relyingPartyOf('https://countersign.example.com')).toEqual({ id: 'countersign.example.com', origins: ['https://countersign.example.com'] });
  });

  it('enrols a passkey (none and packed, ES256 and RS256), refuses a replayed or foreign registration', async () => {
    const view = await enrol(dana, key);
    expect(view).toMatchObject({ name: 'soft key', algorithm: 'ES256', revokedAt: null, intact: true });
    const rsa = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost', alg: -257 });
    expect(await enrol(omar, rsa, 'packed')).toMatchObject({ algorithm: 'RS256' });
    // A registration answered at another origin, for another rpId, or twice, is refused.
    const other = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
    const options = await t.engine.guard.webauthn.registrationOptions(omar);
    expect((await refusal(t.engine.guard.webauthn.register(omar, other.register(options.challenge, { origin: 'https://evil.example' })))).message).toMatch(/evil\.example/);
    expect((await refusal(t.engine.guard.webauthn.register(omar, other.register(options.challenge, { rpId: 'evil.example' })))).message).toMatch(/relying party/);
    // Omar has a passkey now: a second one needs proof of it (review F1), an assertion over the options' stepUp challenge.
    expect(options.stepUp).toMatchObject({ factors: ['webauthn'] });
    expect((await refusal(t.engine.guard.webauthn.register(omar, other.register(options.challenge)))).code).toBe('MFA_REQUIRED');
    await t.engine.guard.webauthn.register(omar, { ...other.register(options.challenge), webauthn: rsa.assert(options.stepUp!.webauthn!.challenge) });
    expect((await refusal(t.engine.guard.webauthn.register(omar, new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' }).register(options.challenge)))).message).toMatch(/already used/);
    // Dana's registration challenge does not enrol a key for Omar.
    const danas = await t.engine.guard.webauthn.registrationOptions(dana);
    expect((await refusal(t.engine.guard.webauthn.register(omar, new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' }).register(danas.challenge)))).code).toBe('VALIDATION_FAILED');
    expect((await t.engine.guard.webauthn.list(dana, 'me')).credentials).toHaveLength(1);
    expect((await refusal(t.engine.guard.webauthn.list(dana, 'omar'))).code).toBe('FORBIDDEN');
    expect((await t.engine.guard.webauthn.list(t.admin, 'omar')).credentials).toHaveLength(2);
    expect((await audits('webauthn_enrolled')).map((d) => d.attestation)).toEqual(['none', 'packed', 'none']);
    expect((await audits('webauthn_enrolled')).map((d) => d.authorisedBy)).toEqual(['none', 'none', 'webauthn']);
  });

  it('approves a critical request with an assertion bound to it, and audits the factor', async () => {
    const request = await critical();
    expect(request.assessment).toMatchObject({ mfaRequired: true, webauthnRequired: true });
    const hash = hashOf(request.action, request.args);
    const matchCode = await t.engine.guard.matchCode(request.id);
    const decided = await t.engine.review(dana, request.id, { verdict: 'approve', matchCode, seenPayloadHash: hash, webauthn: key.assert(await challenge(dana, request.id, hash)) });
    expect(decided.status).toBe('approved');
    const stepUps = (await audits('step_up')).filter((d) => d.factor === 'webauthn');
    expect(stepUps).toHaveLength(1);
    expect(stepUps[0]).toMatchObject({ operatorId: (dana as { operatorId: string }).operatorId, userVerified: true, signCount: key.counter });
  });

  it('refuses TOTP, and an approval without an assertion (the CLI, Slack, Teams, tickets), naming the dashboard', async () => {
    const request = await critical({ path: '/srv/a.db' });
    // Tina has no passkey (TOTP beside a passkey needs the passkey's say-so: webauthn-factors.test.ts).
    const tina = await t.operator('tina', ['director']);
    const secret = (await t.engine.guard.enrolTotp(tina)).secret;
    await t.engine.guard.confirmTotp(tina, totpCode(secret, Date.now() - 30_000));
    const matchCode = await t.engine.guard.matchCode(request.id);
    const e = await refusal(t.engine.review(tina, request.id, { verdict: 'approve', matchCode, totp: totpCode(secret, Date.now()) }));
    expect(e.code).toBe('MFA_REQUIRED');
    expect(e.message).toMatch(/WebAuthn.*dashboard/);
    expect((await refusal(t.engine.review(tina, request.id, { verdict: 'approve', matchCode }))).message).toMatch(/dashboard/);
    // Where policy says `mfa: true`, TOTP and WebAuthn are both accepted.
    const h1 = await high();
    expect((await t.engine.review(tina, h1.id, { verdict: 'approve', totp: totpCode(secret, Date.now() + 30_000) })).status).toBe('approved');
    const h2 = await high();
    const hash = hashOf(h2.action, h2.args);
    expect((await t.engine.review(dana, h2.id, { verdict: 'approve', seenPayloadHash: hash, webauthn: key.assert(await challenge(dana, h2.id, hash)) })).status).toBe('approved');
    expect((await audits('step_up')).map((d) => d.factor)).toEqual(expect.arrayContaining(['totp', 'webauthn']));
  });

  it('an assertion for request A does not approve request B, nor a modified payload, nor twice', async () => {
    const a = await critical({ path: '/srv/a1.db' });
    const b = await critical({ path: '/srv/b1.db' });
    const hashA = hashOf(a.action, a.args);
    const forA = key.assert(await challenge(dana, a.id, hashA));
    const onB = await refusal(t.engine.review(dana, b.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(b.id), webauthn: forA }));
    expect(onB.code).toBe('MFA_INVALID');
    expect(onB.message).toMatch(/another request, payload or verdict/);
    // The original payload's assertion on a modified payload.
    const modified = await refusal(t.engine.review(dana, a.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(a.id), args: { path: '/srv/everything' }, seenPayloadHash: hashA, webauthn: forA }));
    expect(modified.code).toBe('MFA_INVALID');
    expect(modified.message).toMatch(/another request, payload or verdict/);
    expect((await t.engine.getRequest(dana, a.id)).reviews).toHaveLength(0);
    // The same assertion, on its own request, works once.
    expect((await t.engine.review(dana, a.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(a.id), seenPayloadHash: hashA, webauthn: forA })).status).toBe('approved');
    const again = await refusal(t.engine.review(dana, b.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(b.id), webauthn: forA }));
    expect(again.code).toBe('MFA_INVALID');
  });

  it('refuses a cloned authenticator (counter going back) and audits it', async () => {
    const clone = key.clone();
    const r1 = await critical({ path: '/srv/c1.db' });
    const h1 = hashOf(r1.action, r1.args);
    expect((await t.engine.review(dana, r1.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(r1.id), seenPayloadHash: h1, webauthn: key.assert(await challenge(dana, r1.id, h1)) })).status).toBe('approved');
    const r2 = await critical({ path: '/srv/c2.db' });
    const h2 = hashOf(r2.action, r2.args);
    clone.counter -= 1; // the clone was copied before the last use: its next counter repeats the genuine one's
    const e = await refusal(t.engine.review(dana, r2.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(r2.id), seenPayloadHash: h2, webauthn: clone.assert(await challenge(dana, r2.id, h2)) }));
    expect(e.code).toBe('MFA_INVALID');
    expect(e.message).toMatch(/cloned/);
    const clones = await audits('webauthn_clone_suspected');
    expect(clones).toHaveLength(1);
    expect(clones[0]!.reason).toMatch(/counter went back/);
    expect((await t.engine.getRequest(dana, r2.id)).status).toBe('pending');
  });

  it('refuses a wrong origin, a wrong rpId, a bad signature, and a missing UV where policy requires it', async () => {
    const { op: gus, k: key } = await fresh('gus');
    const r = await critical({ path: '/srv/o.db' });
    const h = hashOf(r.action, r.args);
    const m = await t.engine.guard.matchCode(r.id);
    const vote = async (assertion: ReturnType<SoftAuthenticator['assert']>) => refusal(t.engine.review(gus, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: assertion }));
    expect((await vote(key.assert(await challenge(gus, r.id, h), { origin: 'https://countersign.evil.example' }))).message).toMatch(/evil\.example/);
    expect((await vote(key.assert(await challenge(gus, r.id, h), { rpId: 'evil.example' }))).message).toMatch(/relying party/);
    expect((await vote(key.assert(await challenge(gus, r.id, h), { uv: false }))).message).toMatch(/verify the user/);
    expect((await vote(key.assert(await challenge(gus, r.id, h), { up: false }))).message).toMatch(/presence/);
    const forged = key.assert(await challenge(gus, r.id, h));
    const bad = await vote({ ...forged, signature: new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' }).assert(JSON.parse(Buffer.from(forged.clientDataJSON, 'base64url').toString()).challenge).signature });
    expect(bad.message).toMatch(/signature does not verify/);
    // Another operator's credential is not yours.
    expect((await refusal(t.engine.review(omar, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: key.assert(await challenge(gus, r.id, h)) }))).code).toBe('MFA_REQUIRED');
  });

  it('a revoked credential, or one whose counter a database writer wound back, is not enrolled', async () => {
    const { op: hal, k: key } = await fresh('hal');
    const eve = await t.operator('eve', ['director']);
    const k = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
    const cred = await enrol(eve, k);
    const r = await critical({ path: '/srv/r.db' });
    const h = hashOf(r.action, r.args);
    const m = await t.engine.guard.matchCode(r.id);
    const r0 = await critical({ path: '/srv/r0.db' });
    const h0 = hashOf(r0.action, r0.args);
    const clone = key.clone();
    expect((await t.engine.review(hal, r0.id, { verdict: 'approve', matchCode: await t.engine.guard.matchCode(r0.id), seenPayloadHash: h0, webauthn: key.assert(await challenge(hal, r0.id, h0)) })).status).toBe('approved');
    // A database writer winds Hal's counter back to 0, so a clone's counter (1) would pass: the row's MAC no longer verifies.
    const stale = clone.assert(await challenge(hal, r.id, h));
    const db = (t.engine.store as unknown as { db: any }).db;
    await db.updateTable('webauthn_credentials').set({ sign_count: 0 }).where('credential_id', '=', stale.credentialId).execute();
    expect((await refusal(t.engine.review(hal, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: stale }))).code).toBe('MFA_REQUIRED');
    expect((await t.engine.guard.webauthn.list(hal, 'me')).credentials[0]!.intact).toBe(false);
    // Revocation by the owner; an admin revokes another's; a director cannot.
    const assertion = k.assert(await challenge(eve, r.id, h));
    expect((await refusal(t.engine.guard.webauthn.revoke(omar, 'eve', cred.id))).code).toBe('FORBIDDEN');
    expect((await t.engine.guard.webauthn.revoke(t.admin, 'eve', cred.id)).revokedAt).not.toBeNull();
    const e = await refusal(t.engine.review(eve, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: assertion }));
    expect(e.code).toBe('MFA_REQUIRED');
    expect(e.message).toMatch(/revoked/);
    expect((await refusal(t.engine.guard.webauthn.approvalChallenge(eve, r.id, { verdict: 'approve', payloadHash: h }))).message).toMatch(/no enrolled passkey/);
    expect(await audits('webauthn_revoked')).toHaveLength(1);
  });

  it('wrong assertions count toward the step-up lockout', async () => {
    const fay = await t.operator('fay', ['director']);
    const k = new SoftAuthenticator({ origin: ORIGIN, rpId: 'localhost' });
    await enrol(fay, k);
    const r = await critical({ path: '/srv/l.db' });
    const h = hashOf(r.action, r.args);
    const m = await t.engine.guard.matchCode(r.id);
    for (let i = 0; i < 5; i++) {
      expect((await refusal(t.engine.review(fay, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: k.assert(await challenge(fay, r.id, h), { origin: 'https://phish.example' }) }))).code).toBe('MFA_INVALID');
    }
    const locked = await refusal(t.engine.review(fay, r.id, { verdict: 'approve', matchCode: m, seenPayloadHash: h, webauthn: k.assert(await challenge(fay, r.id, h)) }));
    expect(locked.code).toBe('MFA_LOCKED');
  });

  it('migration 027 goes down and up again', async () => {
    const db = (t.engine.store as unknown as { db: any }).db;
    // This test's own schema only: on PostgreSQL every test has a schema in one database, and
    // introspection lists them all (a test running beside this one has webauthn_ tables too).
    const own = engineName === 'postgres' ? (await sql<{ s: string }>`SELECT current_schema() AS s`.execute(db)).rows[0]!.s : undefined;
    const tables = async () =>
      (await db.introspection.getTables())
        .filter((x: { schema?: string }) => own === undefined || x.schema === own)
        .map((x: { name: string }) => x.name)
        .filter((n: string) => n.startsWith('webauthn_'))
        .sort();
    expect(await tables()).toEqual(['webauthn_challenges', 'webauthn_credentials']);
    await m027_webauthn.down!(db);
    expect(await tables()).toEqual([]);
    await m027_webauthn.up(db);
    expect(await tables()).toEqual(['webauthn_challenges', 'webauthn_credentials']);
  });
});
