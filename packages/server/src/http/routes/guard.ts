/**
 * The guard over HTTP: TOTP enrolment, approver velocity and cool-downs, agent pauses and
 * slicing reports. Handlers only translate; the engine's guard decides and audits.
 */
import { createRoute, z, type OpenAPIHono } from '@hono/zod-openapi';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import { ErrorBody, WebAuthnAssertion, WebAuthnRegistration, WebAuthnStepUp } from '@countersign/core';
import type { Engine } from '../../engine/engine.ts';
import { json, security, type ApiEnv as Env } from './contract.ts';


const body = <T extends z.ZodType>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });
const errors = {
  400: json(ErrorBody, 'Bad input'),
  401: json(ErrorBody, 'Missing or unknown credential'),
  403: json(ErrorBody, 'Not allowed (FORBIDDEN, MFA_INVALID)'),
  404: json(ErrorBody, 'No such operator or agent'),
  409: json(ErrorBody, 'Conflict (ILLEGAL_TRANSITION)'),
};
/** An operator or agent, by id or by name. */
const RefParams = z.object({ id: z.string().min(1).max(200) });
const Reason = z.string().min(1).max(2_000).refine((s) => s.trim().length > 0, 'a reason is required');
const Anything = z.record(z.string(), z.unknown());

export const ConfirmTotpBody = z.strictObject({
  code: z.string().regex(/^\d{6}$/, 'a 6-digit code'),
  /** Beside an active passkey: an assertion from one over POST /v1/operators/me/totp/challenge. */
  webauthn: WebAuthnAssertion.optional(),
});
export const CooldownBody = z.strictObject({ minutes: z.number().int().min(1).max(7 * 24 * 60), reason: Reason });
export const PauseBody = z.strictObject({ minutes: z.number().int().min(1).max(30 * 24 * 60), reason: Reason });
export const ResumeBody = z.strictObject({ reason: Reason });
export const AllowlistBody = z.strictObject({ cidrs: z.array(z.string().min(1).max(64)).max(50) });
export const SlicingQuery = z.object({ windowMinutes: z.coerce.number().int().min(1).max(24 * 60).optional() });

const enrolRoute = createRoute({
  method: 'post',
  path: '/v1/operators/me/totp',
  summary: 'Start TOTP enrolment: the secret and otpauth:// URI are shown once; confirm with a first code',
  security,
  responses: {
    201: json(z.object({ secret: z.string(), otpauthUri: z.string(), encryptedAtRest: z.boolean(), confirmWith: z.string() }), 'The new secret'),
    ...errors,
  },
});
const confirmRoute = createRoute({
  method: 'post',
  path: '/v1/operators/me/totp/confirm',
  summary: 'Confirm TOTP enrolment with a first valid code',
  security,
  request: body(ConfirmTotpBody),
  responses: { 200: json(z.object({ enrolled: z.literal(true), confirmedAt: z.string() }), 'Enrolled'), ...errors },
});
const totpStatusRoute = createRoute({
  method: 'get',
  path: '/v1/operators/me/totp',
  summary: 'Whether the caller has TOTP enrolled',
  security,
  responses: { 200: json(z.object({ enrolled: z.boolean(), pending: z.boolean() }), 'Enrolment state'), ...errors },
});
export const WebAuthnChallengeBody = z.strictObject({
  verdict: z.enum(['approve', 'reject']),
  /** The `payload.payloadHash` the approve surface shows: the assertion approves this payload only. */
  payloadHash: z.string().regex(/^[0-9a-f]{64}$/, 'a SHA-256 hex payload hash'),
});
const Descriptor = z.object({ type: z.string(), id: z.string(), transports: z.array(z.string()) });
const CredentialView = z.object({
  id: z.string(),
  name: z.string(),
  credentialId: z.string(),
  algorithm: z.string(),
  createdAt: z.string(),
  lastUsedAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  /** Set when its sign counter went back (a suspected clone): it approves nothing until revoked and replaced. */
  suspendedAt: z.string().nullable(),
  signCount: z.number(),
  intact: z.boolean(),
});
const webauthnOptionsRoute = createRoute({
  method: 'post',
  path: '/v1/operators/me/webauthn/options',
  summary: 'Start enrolling a passkey or security key: options for navigator.credentials.create (the challenge expires in 2 minutes)',
  security,
  responses: { 200: json(z.record(z.string(), z.unknown()), 'PublicKeyCredentialCreationOptions, binary fields base64url'), ...errors },
});
const webauthnRegisterRoute = createRoute({
  method: 'post',
  path: '/v1/operators/me/webauthn',
  summary: 'Finish enrolling: the registration the browser returned (attestation none or packed; ES256 or RS256), with `totp` or `webauthn` proof of a factor you already have when the options asked for it (stepUp)',
  security,
  request: body(WebAuthnRegistration),
  responses: { 201: json(CredentialView, 'The enrolled credential'), ...errors },
});
const webauthnListRoute = createRoute({
  method: 'get',
  path: '/v1/operators/{id}/webauthn',
  summary: 'An operator’s WebAuthn credentials (`me`, or anyone for an admin)',
  security,
  request: { params: RefParams },
  responses: { 200: json(z.object({ operatorId: z.string(), operator: z.string(), credentials: z.array(CredentialView) }), 'Credentials'), ...errors },
});
const webauthnRevokeRoute = createRoute({
  method: 'delete',
  path: '/v1/operators/{id}/webauthn/{credential}',
  summary: 'Revoke a WebAuthn credential (its operator, or an admin); whoever revokes sends `totp` or `webauthn` proof of a factor of theirs when they have one (see …/challenge); audited',
  security,
  request: { params: RefParams.extend({ credential: z.string().min(1).max(200) }), body: { content: { 'application/json': { schema: WebAuthnStepUp } }, required: false } },
  responses: { 200: json(CredentialView, 'The revoked credential'), ...errors },
});
const totpChallengeRoute = createRoute({
  method: 'post',
  path: '/v1/operators/me/totp/challenge',
  summary: 'What confirming TOTP enrolment needs from you: `stepUp` null (no active passkey), or a WebAuthn challenge for one of your passkeys (single use, 2 minutes)',
  security,
  responses: { 200: json(z.object({ stepUp: z.record(z.string(), z.unknown()).nullable() }), 'The step-up confirming needs'), ...errors },
});
const webauthnRevokeOptionsRoute = createRoute({
  method: 'post',
  path: '/v1/operators/{id}/webauthn/{credential}/challenge',
  summary: 'What revoking this credential needs from you: `stepUp` null (you have no factor), or the factors accepted and a WebAuthn challenge bound to this revocation (single use, 2 minutes)',
  security,
  request: { params: RefParams.extend({ credential: z.string().min(1).max(200) }) },
  responses: { 200: json(z.object({ stepUp: z.record(z.string(), z.unknown()).nullable() }), 'The step-up this revocation needs'), ...errors },
});
const webauthnChallengeRoute = createRoute({
  method: 'post',
  path: '/v1/requests/{id}/webauthn/challenge',
  summary: 'A WebAuthn challenge for one vote: bound to the request, the payload hash and the verdict, single use, 2 minutes',
  security,
  request: { params: RefParams, ...body(WebAuthnChallengeBody) },
  responses: {
    200: json(z.object({ challenge: z.string(), rpId: z.string(), allowCredentials: z.array(Descriptor), userVerification: z.string(), timeout: z.number(), expiresAt: z.string() }), 'PublicKeyCredentialRequestOptions'),
    ...errors,
  },
});
const velocityRoute = createRoute({
  method: 'get',
  path: '/v1/approvers/{id}/velocity',
  summary: "An approver's high/critical approvals per hour and day against the limits",
  security,
  request: { params: RefParams },
  responses: { 200: json(Anything, 'Counts, limits, allowed, reason, resetAt'), ...errors },
});
const cooldownRoute = createRoute({
  method: 'get',
  path: '/v1/approvers/{id}/cooldown',
  summary: "An approver's cool-down (automatic or manual)",
  security,
  request: { params: RefParams },
  responses: { 200: json(Anything, 'active, until, reason, triggeredBy'), ...errors },
});
const setCooldownRoute = createRoute({
  method: 'post',
  path: '/v1/approvers/{id}/cooldown',
  summary: 'Send an approver to cool down (lead or more senior), with a reason',
  security,
  request: { params: RefParams, ...body(CooldownBody) },
  responses: { 200: json(Anything, 'The cool-down now'), ...errors },
});
export const LiftCooldownBody = z.strictObject({ reason: Reason });
const liftCooldownRoute = createRoute({
  method: 'delete',
  path: '/v1/approvers/{id}/cooldown',
  summary: "End an approver's manual cool-down early (lead or more senior, of at least the setter's rank; never the approver themselves), with a reason",
  security,
  request: { params: RefParams, ...body(LiftCooldownBody) },
  responses: { 200: json(Anything, 'The cool-down now, and what was lifted'), ...errors },
});
const slicingRoute = createRoute({
  method: 'get',
  path: '/v1/agents/{id}/slicing',
  summary: "Slicing-attack detection over the agent's recent requests",
  security,
  request: { params: RefParams, query: SlicingQuery },
  responses: { 200: json(Anything, '{attackDetected, confidence, alerts:[{type, description, evidence}]}'), ...errors },
});
const pauseStatusRoute = createRoute({
  method: 'get',
  path: '/v1/agents/{id}/pause',
  summary: 'Whether the agent is paused',
  security,
  request: { params: RefParams },
  responses: { 200: json(Anything, 'paused, until, reason'), ...errors },
});
const pauseRoute = createRoute({
  method: 'post',
  path: '/v1/agents/{id}/pause',
  summary: "Pause an agent (lead or more senior): its new requests are refused with AGENT_PAUSED",
  security,
  request: { params: RefParams, ...body(PauseBody) },
  responses: { 200: json(Anything, 'The pause'), ...errors },
});
const resumeRoute = createRoute({
  method: 'post',
  path: '/v1/agents/{id}/resume',
  summary: 'End an agent pause early (lead or more senior)',
  security,
  request: { params: RefParams, ...body(ResumeBody) },
  responses: { 200: json(Anything, 'Not paused any more'), ...errors },
});

const allowlistRoute = createRoute({
  method: 'get',
  path: '/v1/operators/{id}/ip-allowlist',
  summary: 'Where an operator may approve from (CIDRs; empty: anywhere)',
  security,
  request: { params: RefParams },
  responses: { 200: json(Anything, 'operator, cidrs'), ...errors },
});
const setAllowlistRoute = createRoute({
  method: 'put',
  path: '/v1/operators/{id}/ip-allowlist',
  summary: 'Limit where an operator may approve from (admin); an empty list lifts the limit',
  security,
  request: { params: RefParams, ...body(AllowlistBody) },
  responses: { 200: json(Anything, 'operator, cidrs'), ...errors },
});

/** A role by name; an unknown one is a VALIDATION_FAILED from the guard (not BAD_ID), so both routes say which roles exist. */
const RoleParams = z.object({ role: z.string().min(1).max(40) });
const roleAllowlistRoute = createRoute({
  method: 'get',
  path: '/v1/roles/{role}/ip-allowlist',
  summary: 'Where everyone holding a role may approve from (CIDRs; empty: anywhere)',
  security,
  request: { params: RoleParams },
  responses: { 200: json(Anything, 'role, cidrs'), ...errors },
});
const setRoleAllowlistRoute = createRoute({
  method: 'put',
  path: '/v1/roles/{role}/ip-allowlist',
  summary: "Limit where everyone holding a role may approve from (admin), on top of each operator's own list; an empty list lifts the limit",
  security,
  request: { params: RoleParams, ...body(AllowlistBody) },
  responses: { 200: json(Anything, 'role, cidrs'), ...errors },
});

/**
 * The caller's address: the socket's peer, or with `trustProxy` (COUNTERSIGN_TRUST_PROXY) the
 * last hop your proxy appended to X-Forwarded-For. Null when unknown (in-process requests).
 */
export function clientIp(c: Context, trustProxy = false): string | null {
  if (trustProxy) {
    const hops = (c.req.header('x-forwarded-for') ?? '').split(',').map((h) => h.trim()).filter(Boolean);
    const last = hops[hops.length - 1];
    if (last) return last;
  }
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    return null;
  }
}

export function registerGuardRoutes(app: OpenAPIHono<Env>, engine: Engine): void {
  const guard = engine.guard;
  app.openapi(allowlistRoute, async (c) => c.json(await guard.allowlist(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(setAllowlistRoute, async (c) => c.json(await guard.setAllowlist(c.get('principal'), c.req.valid('param').id, c.req.valid('json').cidrs), 200));
  app.openapi(roleAllowlistRoute, async (c) => c.json(await guard.roleAllowlist(c.get('principal'), c.req.valid('param').role), 200));
  app.openapi(setRoleAllowlistRoute, async (c) => c.json(await guard.setRoleAllowlist(c.get('principal'), c.req.valid('param').role, c.req.valid('json').cidrs), 200));
  app.openapi(enrolRoute, async (c) => c.json(await guard.enrolTotp(c.get('principal')), 201));
  app.openapi(confirmRoute, async (c) => c.json(await guard.confirmTotp(c.get('principal'), c.req.valid('json').code, { webauthn: c.req.valid('json').webauthn }), 200));
  app.openapi(totpChallengeRoute, async (c) => c.json(await guard.webauthn.totpOptions(c.get('principal')), 200));
  app.openapi(totpStatusRoute, async (c) => c.json(await guard.totpStatus(c.get('principal')), 200));
  app.openapi(webauthnOptionsRoute, async (c) => c.json(await guard.webauthn.registrationOptions(c.get('principal')), 200));
  app.openapi(webauthnRegisterRoute, async (c) => c.json(await guard.webauthn.register(c.get('principal'), c.req.valid('json')), 201));
  app.openapi(webauthnListRoute, async (c) => c.json(await guard.webauthn.list(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(webauthnRevokeRoute, async (c) => c.json(await guard.webauthn.revoke(c.get('principal'), c.req.valid('param').id, c.req.valid('param').credential, (c.req.valid('json') as WebAuthnStepUp | undefined) ?? {}), 200));
  app.openapi(webauthnRevokeOptionsRoute, async (c) => c.json(await guard.webauthn.revokeOptions(c.get('principal'), c.req.valid('param').id, c.req.valid('param').credential), 200));
  app.openapi(webauthnChallengeRoute, async (c) => c.json(await guard.webauthn.approvalChallenge(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(velocityRoute, async (c) => c.json(await guard.velocity(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(cooldownRoute, async (c) => c.json(await guard.cooldown(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(setCooldownRoute, async (c) => c.json(await guard.setCooldown(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(liftCooldownRoute, async (c) => c.json(await guard.liftCooldown(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(slicingRoute, async (c) =>
    c.json(await guard.slicing(c.get('principal'), c.req.valid('param').id, c.req.valid('query').windowMinutes), 200),
  );
  app.openapi(pauseStatusRoute, async (c) => c.json(await guard.pauseStatus(c.get('principal'), c.req.valid('param').id), 200));
  app.openapi(pauseRoute, async (c) => c.json(await guard.pause(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
  app.openapi(resumeRoute, async (c) => c.json(await guard.resume(c.get('principal'), c.req.valid('param').id, c.req.valid('json')), 200));
}
