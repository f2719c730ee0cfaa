/**
 * The public contract as zod schemas (DESIGN.md §4). The inferred types are the public types:
 * the HTTP layer validates with these, the OpenAPI document is generated from them, and the
 * client SDK is typed by them, so none of the three can drift.
 */
import { z } from 'zod';
import { AUTOMATION_LEVELS, BLAST_SCOPES, REQUEST_STATUSES, RISK_LEVELS, ROLES } from './constants.ts';

export { AUTOMATION_LEVELS, BLAST_SCOPES, REQUEST_STATUSES, RISK_LEVELS, ROLES };

export const RiskLevel = z.enum(RISK_LEVELS);
export type RiskLevel = z.infer<typeof RiskLevel>;

export const AutomationLevel = z.enum(AUTOMATION_LEVELS);
export type AutomationLevel = z.infer<typeof AutomationLevel>;

export const Route = z.enum(['auto_approve', 'review', 'block']);
export type Route = z.infer<typeof Route>;

export const RequestStatus = z.enum(REQUEST_STATUSES);
export type RequestStatus = z.infer<typeof RequestStatus>;

export const Role = z.enum(ROLES);
export type Role = z.infer<typeof Role>;

/** Action names are identifiers, not prose: they appear in policy, metrics and CLI tables. */
export const ActionName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z][A-Za-z0-9_.:-]*$/, 'must start with a letter and use only letters, digits, _ . : -');

/** How deep agent-supplied JSON may nest. Deeper input is refused before anything walks it. */
export const MAX_JSON_DEPTH = 32;

/** True when `value` nests objects/arrays deeper than `limit`. Iterative: safe on hostile input. */
export function exceedsDepth(value: unknown, limit = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (current === null || typeof current !== 'object') continue;
    if (depth >= limit) return true;
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
  return false;
}

function checkDepth(value: unknown, ctx: z.RefinementCtx): void {
  if (exceedsDepth(value)) {
    ctx.addIssue({ code: 'custom', message: `nested deeper than ${MAX_JSON_DEPTH} levels` });
  }
}

export const JsonObject = z.record(z.string(), z.unknown());
export type JsonObject = z.infer<typeof JsonObject>;

/**
 * Free text that lands in its own column. NUL is refused: PostgreSQL text cannot hold it, and
 * no legitimate description or reason contains one (inside `args`, JSON escapes it).
 */
const text = (max: number, min = 0) =>
  z
    .string()
    .min(min)
    .max(max)
    .refine((s) => !s.includes('\u0000'), 'must not contain NUL (\\u0000) characters');
const ShortText = text(2_000);
const LongText = text(20_000);

export const Target = z.union([
  z.string().max(2_000),
  z.looseObject({
    name: z.string().max(2_000).optional(),
    id: z.string().max(2_000).optional(),
    type: z.string().max(200).optional(),
    criticality: RiskLevel.optional(),
  }),
]);
export type Target = z.infer<typeof Target>;

export const Evidence = z.union([
  LongText,
  z.looseObject({ type: z.string().max(200).optional(), summary: LongText.optional(), source: ShortText.optional() }),
]);
export type Evidence = z.infer<typeof Evidence>;

export const BlastRadius = z.union([
  z.number().int().nonnegative(),
  z.enum(BLAST_SCOPES),
  z.looseObject({
    scope: z.enum(BLAST_SCOPES).optional(),
    count: z.number().int().nonnegative().optional(),
    description: ShortText.optional(),
  }),
]);
export type BlastRadius = z.infer<typeof BlastRadius>;

export const AttackTechnique = z.string().regex(/^T\d{4}(\.\d{3})?$/, 'ATT&CK technique id like T1059 or T1059.001');

/** What the agent says about the situation. Free-form extras are kept (and never trusted). */
export const RequestContext = z.looseObject({
  target: Target.optional(),
  evidence: z.array(Evidence).max(200).optional(),
  blastRadius: BlastRadius.optional(),
  attack: z.array(AttackTechnique).max(100).optional(),
  relatedIncidents: z.array(z.string().max(200)).max(100).optional(),
  value: z.number().nonnegative().finite().optional(),
  reversible: z.boolean().optional(),
  timeSensitivity: z.number().min(0).max(1).optional(),
  threatScore: z.number().min(0).max(1).optional(),
});
export type RequestContext = z.infer<typeof RequestContext>;

export const Alternative = z.strictObject({
  name: text(100, 1),
  action: ActionName,
  args: JsonObject.default({}),
  description: ShortText.optional(),
});
export type Alternative = z.infer<typeof Alternative>;

/** An alternative as a request shows it: `blocked` names the policy rules that block it (it can never be chosen). */
export const AlternativeView = Alternative.extend({ blocked: z.object({ rules: z.array(z.string()) }).optional() });
export type AlternativeView = z.infer<typeof AlternativeView>;

/** One required approver: by role (or higher), by group, or a named operator. */
export const ApproverSpec = z
  .strictObject({
    role: Role.optional(),
    group: z.string().min(1).max(100).optional(),
    operator: z.string().min(1).max(100).optional(),
  })
  .refine((a) => a.role !== undefined || a.group !== undefined || a.operator !== undefined, {
    message: 'an approver names a role, a group or an operator',
  });
export type ApproverSpec = z.infer<typeof ApproverSpec>;

/** Actions Countersign itself proposes (aggregate reviews); an agent may not name one. */
export const RESERVED_ACTION_PREFIX = 'countersign.';

/**
 * What an alternative name may not contain. The name is printed as is in every notification's
 * link list, on buttons and in subjects, so a line break (CR, LF, NEL U+0085, U+2028, U+2029, VT,
 * FF: all C0/C1 controls) could print a fake line of its own, and a format character (bidi
 * controls, zero-width characters) could disguise it. One character class: linear.
 */
const NAME_BREAKER = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
/**
 * What else a name may not hold, because it is printed beside real links (review D7): `://` (a
 * link of its own), a double quote (it is quoted in link lists), and leading, trailing or
 * repeated whitespace (padding that pushes text to where a mail client wraps). Linear.
 */
const NAME_LINKLIKE = /:\/\/|"|^\s|\s$|\s\s/u;

export const CreateRequestBody = z
  .strictObject({
    action: ActionName,
    args: JsonObject.default({}),
    description: LongText.optional(),
    confidence: z.number().min(0).max(1).optional(),
    riskLevel: RiskLevel.optional(),
    context: RequestContext.optional(),
    alternatives: z.array(Alternative).max(20).optional(),
    approvers: z.array(ApproverSpec).max(20).optional(),
    timeoutSeconds: z.number().int().min(1).max(30 * 86_400).optional(),
    idempotencyKey: text(200, 1).optional(),
  })
  .superRefine((body, ctx) => {
    checkDepth(body, ctx);
    if (body.action.toLowerCase().startsWith(RESERVED_ACTION_PREFIX)) {
      ctx.addIssue({ code: 'custom', path: ['action'], message: 'actions named countersign.* are reserved for Countersign itself' });
    }
    const names = new Set<string>();
    for (const [i, alt] of (body.alternatives ?? []).entries()) {
      if (alt.action.toLowerCase().startsWith(RESERVED_ACTION_PREFIX)) {
        ctx.addIssue({ code: 'custom', path: ['alternatives', i, 'action'], message: 'actions named countersign.* are reserved for Countersign itself' });
      }
      const bad = NAME_BREAKER.exec(alt.name);
      if (bad) {
        const at = `U+${(bad[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
        ctx.addIssue({ code: 'custom', path: ['alternatives', i, 'name'], message: `an alternative name is one line of visible text; it contains ${at} at position ${bad.index} (line breaks, control, line/paragraph separator and format characters such as bidi controls or zero-width spaces are refused)` });
      }
      const linkLike = bad ? null : NAME_LINKLIKE.exec(alt.name);
      if (linkLike) {
        ctx.addIssue({ code: 'custom', path: ['alternatives', i, 'name'], message: `an alternative name is a short label shown beside real links: it may not contain "://", double quotes, or leading, trailing or repeated spaces (found ${JSON.stringify(linkLike[0])} at position ${linkLike.index})` });
      }
      if (names.has(alt.name)) {
        ctx.addIssue({ code: 'custom', path: ['alternatives', i, 'name'], message: `duplicate alternative name "${alt.name}"` });
      }
      names.add(alt.name);
    }
  });
export type CreateRequestBody = z.input<typeof CreateRequestBody>;
export type CreateRequest = z.output<typeof CreateRequestBody>;

export const Verdict = z.enum(['approve', 'reject']);
export type Verdict = z.infer<typeof Verdict>;

const B64url = (max: number) => z.string().min(1).max(max).regex(/^[A-Za-z0-9_-]+$/, 'base64url');

/** A WebAuthn assertion as the browser returns it (`PublicKeyCredential` with an `AuthenticatorAssertionResponse`), base64url. */
export const WebAuthnAssertion = z.strictObject({
  credentialId: B64url(1400),
  clientDataJSON: B64url(4000),
  authenticatorData: B64url(4000),
  signature: B64url(1400),
  userHandle: B64url(200).nullable().optional(),
});
export type WebAuthnAssertion = z.infer<typeof WebAuthnAssertion>;

/** A WebAuthn registration as the browser returns it (`AuthenticatorAttestationResponse`), base64url; `name` labels the credential. */
export const WebAuthnRegistration = z.strictObject({
  credentialId: B64url(1400),
  clientDataJSON: B64url(4000),
  attestationObject: B64url(16000),
  transports: z.array(z.string().max(20)).max(10).optional(),
  name: text(100, 1).optional(),
  /** Proof of a factor the operator already has (needed when they have one): a current TOTP code… */
  totp: z.string().regex(/^\d{6,8}$/).optional(),
  /** …or an assertion from an active passkey over the options' `stepUp.webauthn.challenge`. */
  webauthn: WebAuthnAssertion.optional(),
});
export type WebAuthnRegistration = z.infer<typeof WebAuthnRegistration>;

/** Proof for revoking a passkey (needed when whoever revokes has a factor): a current TOTP code, or an assertion over the revoke challenge. */
export const WebAuthnStepUp = z.strictObject({
  totp: z.string().regex(/^\d{6,8}$/).optional(),
  webauthn: WebAuthnAssertion.optional(),
});
export type WebAuthnStepUp = z.infer<typeof WebAuthnStepUp>;

export const ReviewBody = z
  .strictObject({
    verdict: Verdict,
    reason: ShortText.optional(),
    args: JsonObject.optional(),
    alternative: text(100, 1).optional(),
    totp: z.string().regex(/^\d{6,8}$/).optional(),
    /** Number matching: the short code shown on the request card (critical approvals). */
    matchCode: z.string().regex(/^\d{2}$/).optional(),
    /**
     * The `payload.payloadHash` of the request as the approve surface showed it. A plain approval
     * whose payload is no longer that one is refused (PAYLOAD_CHANGED); once a reviewer modified
     * the args, a plain approval without it is refused too. Every approve surface sends it.
     */
    seenPayloadHash: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    /**
     * Step-up by WebAuthn: an assertion (`navigator.credentials.get`) over the challenge from
     * `POST /v1/requests/:id/webauthn/challenge`, which binds this request, the payload hash
     * approved and the verdict. Fields base64url, as the browser gives them.
     */
    webauthn: WebAuthnAssertion.optional(),
  })
  .superRefine((r, ctx) => {
    checkDepth(r, ctx);
    if (r.verdict === 'reject' && !r.reason?.trim()) {
      ctx.addIssue({ code: 'custom', path: ['reason'], message: 'a rejection needs a reason' });
    }
    if (r.verdict === 'reject' && (r.args !== undefined || r.alternative !== undefined)) {
      ctx.addIssue({ code: 'custom', path: ['verdict'], message: 'args and alternative go with approve' });
    }
    if (r.args !== undefined && r.alternative !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['alternative'], message: 'give either modified args or an alternative, not both' });
    }
  });
export type ReviewBody = z.infer<typeof ReviewBody>;

/** `{status: succeeded | failed}`: how the claimed action ran; closes the record (→ `executed` / `execution_failed`). */
export const ExecutionReportBody = z
  .strictObject({
    status: z.enum(['succeeded', 'failed']),
    result: z.unknown().optional(),
    error: ShortText.optional(),
  })
  .superRefine(checkDepth);
export type ExecutionReportBody = z.infer<typeof ExecutionReportBody>;


export const CancelBody = z.strictObject({ reason: ShortText.optional() });
export type CancelBody = z.infer<typeof CancelBody>;

// ---- what the system computes ----

export const RiskFactor = z.object({
  name: z.string(),
  value: z.number(),
  weight: z.number(),
  contribution: z.number(),
  detail: z.string(),
});
export type RiskFactor = z.infer<typeof RiskFactor>;

export const MatchedRule = z.object({
  name: z.string(),
  reason: z.string(),
  effects: z.array(z.string()),
});
export type MatchedRule = z.infer<typeof MatchedRule>;

/** One stage of an approval: `count` distinct reviewers, each matching the filter. Stages run in order. */
export const ApprovalStage = z.object({
  count: z.number().int().min(1),
  role: Role.optional(),
  group: z.string().optional(),
  operators: z.array(z.string()).optional(),
  label: z.string(),
});
export type ApprovalStage = z.infer<typeof ApprovalStage>;

export const ApprovalRequirement = z.object({
  stages: z.array(ApprovalStage).min(1),
  /** Rejections that decide the request at once. */
  deny: z.number().int().min(1),
  /** A modified payload (args or an alternative) needs one more approval, from someone other than its proposer. */
  modifiedNeedsSecondReviewer: z.boolean().optional(),
});
export type ApprovalRequirement = z.infer<typeof ApprovalRequirement>;

export const Assessment = z.object({
  riskScore: z.number(),
  riskLevel: RiskLevel,
  factors: z.array(RiskFactor),
  automationLevel: AutomationLevel,
  route: Route,
  requiresApproval: z.boolean(),
  matchedRules: z.array(MatchedRule),
  approval: ApprovalRequirement.nullable(),
  slaSeconds: z.number().nullable(),
  slaDueAt: z.string().nullable(),
  mfaRequired: z.boolean(),
  /** The step-up must be a WebAuthn assertion (`levels.<risk>.mfa: webauthn`); absent means a TOTP code or an assertion. */
  webauthnRequired: z.boolean().optional(),
  reasons: z.array(z.string()),
  /** The escalation level a rule (`then.startLevel`) starts this request at; absent means level 1. */
  escalationStartLevel: z.number().int().min(1).optional(),
  /**
   * The value `valueAtLeast` compared (policy/value.ts): the larger of the args' amount (the
   * policy's `actions.<name>.value` path, else `args.amount` / `args.value`) and the agent's
   * `context.value`, with both sources, so a card can show them when they differ. Absent when
   * the request gave none.
   */
  value: z
    .object({
      amount: z.number(),
      args: z.object({ path: z.string(), amount: z.number() }).optional(),
      context: z.number().optional(),
    })
    .optional(),
  /**
   * What prompt-injection screening found in the request's text (screen/request.ts), when it
   * found anything or could not read everything: where (field path, UTF-16 span), what and why.
   */
  screening: z
    .object({
      score: z.number(),
      action: z.enum(['allow', 'review', 'escalate', 'block', 'sanitize']),
      severity: z.enum(['none', 'low', 'medium', 'high', 'critical']),
      overBudget: z.boolean(),
      screenedChars: z.number(),
      findings: z.array(
        z.object({
          field: z.string(),
          kind: z.string(),
          span: z.object({ start: z.number().int(), end: z.number().int() }),
          score: z.number(),
          why: z.string(),
        }),
      ),
    })
    .optional(),
});
export type Assessment = z.infer<typeof Assessment>;

export const Actor = z.object({
  type: z.enum(['agent', 'operator', 'system']),
  id: z.string(),
  name: z.string(),
});
export type Actor = z.infer<typeof Actor>;

export const DecisionOutcome = z.enum(['approved', 'rejected', 'expired', 'cancelled']);
export type DecisionOutcome = z.infer<typeof DecisionOutcome>;

/**
 * A decision, signed by the server's audit key (Ed25519 over `receiptMessage`): it binds the
 * request, the SHA-256 of the canonical JSON of what may run, the outcome, who decided and
 * when. The SDK checks it before it runs anything, so an approval cannot be forged or replayed
 * onto other args.
 */
export const Receipt = z.object({
  /** 1: no claim fields (receipts from before single-use claims; still verify). 2: carries `nonce` and `expiresAt`, both signed. */
  version: z.union([z.literal(1), z.literal(2)]),
  requestId: z.string(),
  outcome: DecisionOutcome,
  decidedBy: z.enum(['policy', 'reviewers', 'agent', 'timeout']),
  deciders: z.array(Actor),
  decidedAt: z.string(),
  /** Hex SHA-256 of canonical JSON `{action, args}` of the approved payload; null unless approved. */
  payloadHash: z.string().nullable(),
  keyId: z.string(),
  /** Version 2: a random id the approval is claimed with, once (`POST /v1/requests/:id/execution {status: started, receipt}`). */
  nonce: z.string().optional(),
  /** Version 2: ISO time after which the approval can no longer be claimed (`RECEIPT_EXPIRED`); policy `levels.<risk>.approvalValidFor`. */
  expiresAt: z.string().optional(),
  signature: z.string(),
});
export type Receipt = z.infer<typeof Receipt>;

/** `{status: started, receipt}`: claim the approval once, before anything runs (→ `executing`). */
export const ExecutionClaimBody = z.strictObject({
  status: z.literal('started'),
  /** The receipt exactly as the decision carried it; the server checks its signature, nonce, payload and expiry. */
  receipt: Receipt,
});
export type ExecutionClaimBody = z.infer<typeof ExecutionClaimBody>;

/** The execution route's body: a claim, or the closing report. */
export const ExecutionBody = z.discriminatedUnion('status', [ExecutionClaimBody, ExecutionReportBody]);
export type ExecutionBody = z.infer<typeof ExecutionBody>;

export const Decision = z.object({
  outcome: DecisionOutcome,
  /** `policy` for automatic decisions, `reviewers` for human ones, `agent` for cancellation, `timeout` for expiry. */
  decidedBy: z.enum(['policy', 'reviewers', 'agent', 'timeout']),
  deciders: z.array(Actor),
  reason: z.string().nullable(),
  at: z.string(),
  /** What may run: the approved action and args (modified or an alternative's), null unless approved. */
  action: z.string().nullable(),
  args: JsonObject.nullable(),
  alternative: z.string().nullable(),
  modified: z.boolean(),
  /** The signed receipt (servers with an audit key sign every decision). */
  receipt: Receipt.optional(),
});
export type Decision = z.infer<typeof Decision>;

export const Review = z.object({
  id: z.string(),
  requestId: z.string(),
  reviewer: Actor,
  verdict: Verdict,
  reason: z.string().nullable(),
  args: JsonObject.nullable(),
  alternative: z.string().nullable(),
  at: z.string(),
});
export type Review = z.infer<typeof Review>;

export const Execution = z.object({
  status: z.enum(['succeeded', 'failed']),
  result: z.unknown().optional(),
  error: z.string().nullable(),
  at: z.string(),
});
export type Execution = z.infer<typeof Execution>;

/** Where a pending request stands in its escalation chain (policy `escalation`), and its deadline. */
export const EscalationInfo = z.object({
  /** 1-based level in `escalation.levels`; 0 when the policy defines no levels. */
  level: z.number().int(),
  levels: z.number().int(),
  /** The current level's role (it, and more senior roles, may stand in for the named approvers). */
  role: Role.nullable(),
  /** Operators and groups the current level names: told and shown the request (they sign only what the gate lets them, unless finalAuthority). */
  /** (Defaults keep a client reading a server from before named escalation: it sends none of these three.) */
  operators: z.array(z.string()).default([]),
  groups: z.array(z.string()).default([]),
  /** The current level is the final authority, escalated into: any one of its named people may decide alone. */
  finalAuthority: z.boolean().default(false),
  /** When the current level times out (then: the next level, or onFinalTimeout). */
  dueAt: z.string(),
  /** A reviewer granted the one extension. */
  extended: z.boolean(),
  assignee: z.object({ operator: z.string().optional(), group: z.string().optional() }).nullable(),
  onFinalTimeout: z.enum(['reject', 'approve']),
});
export type EscalationInfo = z.infer<typeof EscalationInfo>;

/** A request as the API returns it. */
export const ApprovalRequest = z.object({
  id: z.string(),
  agentId: z.string(),
  agentName: z.string(),
  status: RequestStatus,
  action: z.string(),
  args: JsonObject,
  description: z.string().nullable(),
  confidence: z.number().nullable(),
  riskHint: RiskLevel.nullable(),
  context: JsonObject,
  alternatives: z.array(AlternativeView),
  approvers: z.array(ApproverSpec),
  idempotencyKey: z.string().nullable(),
  assessment: Assessment,
  policyVersion: z.number(),
  reviews: z.array(Review),
  decision: Decision.nullable(),
  execution: Execution.nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  expiresAt: z.string().nullable(),
  /** Present while the request waits for reviewers (and kept, frozen, once decided); null when policy decided at once. */
  escalation: EscalationInfo.nullable().optional(),
  /** Number matching: shown to operators reading a critical request, never in notifications; approvals must repeat it. */
  matchCode: z.string().optional(),
  /**
   * For an operator reading a pending request: whether they may act on it now — vote (role, stage,
   * own request, earlier vote) and approve (not held back by their cool-down or velocity limit).
   */
  actionable: z.boolean().optional(),
  /**
   * With `actionable: false`: why, as the server would refuse an approval now (the gate's dry run):
   * the error code, a sentence for the card, and when it passes by itself (a cool-down's end).
   */
  notActionable: z.object({ code: z.string(), message: z.string(), retryAt: z.string().optional() }).optional(),
  /**
   * While pending: the payload an approval approves now (the request as asked, or the latest
   * modification or alternative proposed in this round), and its hash, which an approve surface
   * sends back as `seenPayloadHash`.
   */
  payload: z
    .object({
      action: z.string(),
      args: JsonObject,
      alternative: z.string().nullable(),
      payloadHash: z.string(),
      /** What approving it needs beyond the vote, over the union of the request's and the payload's own requirements. */
      mfaRequired: z.boolean(),
      /** The step-up must be a WebAuthn assertion made in the dashboard (a TOTP code is refused). Always sent by this server; optional so a client reads a server from before it (rolling upgrades). */
      webauthnRequired: z.boolean().optional(),
      matchCodeRequired: z.boolean(),
    })
    .optional(),
  /**
   * Read one at a time: the request belongs to an aggregate review (`onSlicing: aggregate`) and
   * is approved only through it. `id` is that review, null while requests are still being
   * collected (until `collectingUntil`).
   */
  aggregate: z.object({ id: z.string().nullable(), collectingUntil: z.string().nullable() }).optional(),
  /** Read one at a time, while pending: the request's agent is paused, so approvals wait until `until` (rejecting is allowed). */
  agentPaused: z.object({ until: z.string(), reason: z.string() }).optional(),
});
export type ApprovalRequest = z.infer<typeof ApprovalRequest>;

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
