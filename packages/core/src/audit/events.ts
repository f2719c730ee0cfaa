/**
 * The catalogue of audit events: every `type` the trail can hold, what it records, and the
 * fields its `data` carries. The server's audit writer accepts only these types (so a new event
 * is added here first, where reports and the dashboard can see it), the compliance report's
 * lists (`GUARD_EVENT_TYPES`, the `*_refused` entries) are checked against it, and readers of
 * the trail can name the fields they rely on.
 *
 * Data is stored redacted (personal data as keyed tokens, identities kept); `payloadHash` is the
 * SHA-256 of the canonical `{action, args}`, never the args themselves.
 */

/** One event: who writes it and the fields of its data (optional ones end in `?`). */
export interface AuditEventSpec {
  readonly about: string;
  readonly data: readonly string[];
}

export const AUDIT_EVENTS = {
  // ---- configuration and credentials
  policy_loaded: { about: 'a new policy version was stored and activated', data: ['version', 'hash', 'source'] },
  agent_config_changed: { about: 'an agent’s configuration overlay (PUT /v1/agents/:name/config) was set: a policy change for that agent, versioned; `approvedBy` and `requestId` when a second admin approved it (four-eyes), `loosens` what it loosened', data: ['agentId', 'agent', 'version', 'previousVersion', 'hash', 'config', 'loosens', 'requestId?', 'approvedBy?'] },
  agent_config_proposed: { about: 'an admin’s agent configuration change loosens the gate, so it waits for another admin as a countersign.agent_config request', data: ['agentId', 'agent', 'baseVersion', 'hash', 'loosens', 'requestId'] },
  agent_config_refused: { about: 'an approved agent configuration change was not applied: another change landed after it was proposed (its base version is gone)', data: ['agentId', 'agent', 'baseVersion', 'currentVersion', 'requestId'] },
  operator_created: { about: 'an admin created an operator (`tokenless`: the embedded gateway’s admin, made without a token)', data: ['operatorId', 'name', 'roles', 'groups', 'tokenless?'] },
  operator_token_issued: { about: 'first `serve` on a database no person had a token for (an embedded gateway made it): its admin operator was given one (no part of the token is kept; entries before issue 13 held a prefix)', data: ['operatorId', 'name', 'tokenId?', 'prefix?'] },
  key_created: { about: 'an admin created an agent API key (no part of the key is kept; entries before issue 13 held a prefix)', data: ['agentId', 'agentName', 'keyId', 'prefix?'] },
  key_revoked: { about: 'an admin revoked an agent API key', data: ['keyId', 'agentId', 'agentName'] },
  key_rotated: { about: 'an admin gave an agent a new key; the old one works until `previousValidUntil`', data: ['keyId', 'agentId', 'agentName', 'previousKeyId', 'previousValidUntil'] },
  operator_updated: { about: 'an admin changed an operator’s roles, groups or disabled state', data: ['operatorId', 'name', 'roles?', 'groups?', 'disabled?', 'sessionsEnded'] },
  operator_removed: { about: 'an admin removed an operator: every token revoked, every session ended', data: ['operatorId', 'name', 'revokedTokenIds', 'sessionsEnded'] },
  token_rotated: { about: 'an admin gave an operator a new token; the old ones are revoked', data: ['operatorId', 'name', 'tokenId', 'revokedTokenIds', 'sessionsEnded'] },
  admin_recovered: { about: '`countersign admin recover` (server host: secret file and database) minted an admin token', data: ['operatorId', 'name', 'tokenId', 'created'] },
  // ---- identity provider (SSO and SCIM; `source`: oidc | scim)
  operator_provisioned: { about: 'the identity provider made an operator: a first single sign-on or a SCIM create; roles from its groups (the role map)', data: ['operatorId', 'name', 'source', 'roles', 'groups', 'disabled', 'subject?', 'scimId?'] },
  operator_synced: { about: 'the identity provider changed an operator: roles and groups from its groups (`previousRoles`), active state; ending sessions when it loses every role or is deactivated, and revoking every API token on a deactivation (`revokedTokenIds`)', data: ['operatorId', 'name', 'source', 'roles?', 'previousRoles?', 'groups?', 'disabled?', 'sessionsEnded', 'revokedTokenIds?'] },
  operator_sync_refused: { about: 'the identity provider’s change to an operator was refused and nothing was changed: it would have left no active admin (`reason: last_admin`)', data: ['operatorId', 'name', 'source', 'reason', 'change'] },
  operator_deprovisioned: { about: 'SCIM deleted a user: the operator is removed, every token revoked, every session ended, every provider subject unlinked (`unlinkedSubjects`)', data: ['operatorId', 'name', 'source', 'revokedTokenIds', 'sessionsEnded', 'unlinkedSubjects?'] },
  sso_signed_in: { about: 'an operator signed in to the dashboard through the identity provider (OpenID Connect)', data: ['operatorId', 'name', 'issuer', 'subject', 'roles'] },
  sso_refused: { about: 'a sign-in with a valid ID token was refused: domain, unverified email, no mapped role, a deactivated or unlinkable operator', data: ['issuer', 'subject', 'reason', 'operatorId?'] },
  scim_group_changed: { about: 'SCIM created, changed or deleted a group; members added and removed (their roles follow in operator_synced)', data: ['groupId', 'displayName', 'change', 'added', 'removed'] },
  identity_row_refused: { about: 'a SCIM group or membership row did not verify under the server secret (written or edited in the database): it gives no role', data: ['table', 'operatorId', 'groupIds'] },
  scim_token_created: { about: 'an admin created a SCIM bearer token (no part of it is kept)', data: ['tokenId', 'name'] },
  scim_token_revoked: { about: 'an admin revoked a SCIM bearer token, or its maker was removed, disabled or lost admin (`reason`): a token never outlives its maker’s authority', data: ['tokenId', 'name', 'reason?'] },
  credentials_adopted: { about: 'the start that created the server secret file MACed the credential rows written before it', data: ['operators', 'tokens', 'keys'] },
  agent_created: { about: 'an agent was registered', data: ['agentId', 'name'] },
  audit_entry_malformed: { about: 'an entry in the queue of entries waiting for a tree position could not be made a leaf (a field out of range: written into the database by something other than the audit writer); it is integrated as this entry, its fields kept as text, so the trail neither stalls nor loses it', data: ['entryId', 'problem', 'fields'] },
  audit_state_adopted: { about: 'a verified checkpoint became the audit signer’s state: `audit trust-current` (its state file was lost or damaged) or, once, the first start after the upgrade that introduced the state file', data: ['mode', 'treeSize', 'rootHash', 'keyId', 'pinned', 'pins', 'witness', 'replaced', 'previousTreeSize', 'reason', 'user', 'host'] },
  audit_key_rotated: { about: '`audit rotate-key` handed the signing key over: the statement signed by both the old and the new key (old key id and public key, new key id and public key, the size and root the old key’s authority ends at, the time)', data: ['handover', 'reason', 'user', 'host'] },
  encryption_rotated: { about: '`keys rotate-encryption` finished: counts and key ids', data: ['keyId', 'previousKeyIds', 'resealed', 'staleLeft', 'tables'] },
  // ---- a request's lifecycle
  created: { about: 'an agent (or an operator as one) filed a request; the policy judged it (with the agent’s configuration overlay at `agentConfigVersion`, when it has one)', data: ['action', 'agentId', 'confidence?', 'policyVersion', 'riskScore', 'riskLevel', 'automationLevel?', 'route', 'matchedRules', 'payloadHash', 'members?', 'refiles?', 'screening?', 'agentConfigVersion?'] },
  prechecked: { about: 'the governance pre-checks (policy `prechecks:`) judged the payload that would run, at create or at a vote: each validator’s name, identity (hash of its canonical config), status, outcome and reasons (its own bounded text), and the combined effect; never the request body sent', data: ['stage', 'payloadHash', 'policyVersion', 'effect', 'raiseTo', 'validators'] },
  queued: { about: 'the request waits for reviewers', data: ['slaDueAt', 'approval', 'escalation?'] },
  reviewed: { about: 'one reviewer voted (`finalAuthority`: as the final authority of that escalation level, deciding alone)', data: ['verdict', 'reason', 'modifiedArgs', 'alternative', 'stage', 'finalAuthority?'] },
  approved: { about: 'the approval requirement was met (or the policy or a timeout approved; `finalAuthority`: one member of the final-authority level decided alone)', data: ['decidedBy', 'deciders?', 'reason', 'alternative?', 'modified?', 'payloadHash', 'aggregateId?', 'finalAuthority?'] },
  rejected: { about: 'a reviewer, the policy or an aggregate rejected it (`finalAuthority`: as the final authority)', data: ['decidedBy', 'deciders?', 'reason', 'alternative?', 'modified?', 'payloadHash?', 'aggregateId?', 'finalAuthority?'] },
  cancelled: { about: 'the agent withdrew it', data: ['decidedBy?', 'deciders?', 'reason', 'alternative?', 'modified?', 'payloadHash?'] },
  expired: { about: 'no decision in time (the agent timeout or the end of the escalation chain)', data: ['decidedBy?', 'deciders?', 'reason', 'alternative?', 'modified?', 'payloadHash?'] },
  execution_started: { about: 'the approval was claimed, once, with its receipt (→ executing); only now may it run', data: ['payloadHash', 'expiresAt', 'receiptVersion'] },
  claim_refused: { about: 'a claim of an approval was refused (replay, other receipt, expired); written after the rollback', data: ['code', 'message'] },
  claim_lapsed: { about: 'an approval never claimed before its expiry; a create under its idempotency key filed a new request', data: ['refiledAs', 'expiresAt'] },
  approval_lapsed: { about: 'the scheduler swept an approval never claimed before its claim deadline (→ lapsed, final); written once, by whichever server won the row', data: ['expiresAt', 'lateMs'] },
  executed: { about: 'the agent reported it ran (an approved aggregate: its members run)', data: ['status', 'error?', 'members?'] },
  execution_failed: { about: 'the agent reported it failed', data: ['status', 'error'] },
  screen_verdict: { about: 'a reviewer judged a screening finding (or an audit-sampled request): injection, not injection or unsure; separate from approve/reject', data: ['verdictId', 'finding', 'field', 'kind', 'verdict', 'score', 'counted'] },
  screen_model_adopted: { about: 'the screening retrain passed its evaluation gate and this model now screens the create path (the committed model stays as the frozen baseline)', data: ['seq', 'hash', 'version', 'basedOn', 'verdicts', 'sets', 'trigger'] },
  screen_model_refused: { about: 'a screening retrain was refused: its candidate regressed on the committed evaluation, or another server adopted first; the model in use is unchanged', data: ['hash', 'version', 'basedOn', 'reason', 'verdicts', 'sets', 'trigger'] },
  feedback: { about: 'an operator judged a request the policy approved on its own', data: ['verdict', 'note', 'automationLevel', 'riskLevel'] },
  // ---- deadlines and notifications
  escalated: { about: 'the next escalation level: undecided at its deadline (`reason: sla_timeout`), a reviewer escalated it (`manual`, with `by` and their `text`), or policy started it above level 1 at creation (`critical`, with `startedBy`: the rules or the risk level), or an operator’s cool-down left nobody free who may approve it (`cooldown`, with the operator, `cooldownUntil`, `setBy` for a manual one, and the `eligible` reviewers, all cooling)', data: ['from', 'to', 'role', 'dueAt', 'notify', 'reason?', 'lateMs?', 'by?', 'text?', 'riskLevel?', 'startedBy?', 'operatorId?', 'operator?', 'cooldownUntil?', 'setBy?', 'eligible?'] },
  cooldown_stranded: { about: 'an operator’s cool-down left nobody free who may approve it, at a level that cannot escalate (the last, or a final authority): it stays pending, never approved by this; its level’s channels are told', data: ['level', 'operatorId', 'operator', 'cooldownUntil', 'setBy?', 'eligible', 'notify'] },
  extended: { about: 'a reviewer gave it more time at its level', data: ['level', 'bySeconds', 'reason', 'dueAt'] },
  reassigned: { about: 'a reviewer handed it to an operator or a group', data: ['level', 'to', 'reason'] },
  notified: { about: 'a channel delivered a notification', data: ['deliveryId', 'channel', 'event', 'attempts'] },
  delivery_failed: { about: 'a notification gave up after its last attempt or a permanent error', data: ['deliveryId', 'channel', 'event', 'attempts', 'error'] },
  // ---- reviewer protection (the guard)
  totp_enrolment_started: { about: 'an operator began TOTP enrolment', data: ['operatorId', 'encrypted'] },
  totp_enrolled: { about: 'an operator confirmed TOTP enrolment (authorisedBy: webauthn when a passkey of theirs approved it, none when they had none)', data: ['operatorId', 'authorisedBy'] },
  totp_sealed: { about: 'TOTP seeds stored `plain:` were sealed at start (under the server secret’s key when no encryption key is set)', data: ['count', 'keyId'] },
  webauthn_enrolled: { about: 'an operator enrolled a passkey or security key (WebAuthn); authorisedBy: the factor they already had that proved it (none, totp, webauthn)', data: ['operatorId', 'credential', 'name', 'algorithm', 'attestation', 'userVerified', 'authorisedBy', 'authorisingCredential?'] },
  webauthn_revoked: { about: 'a WebAuthn credential was revoked (by its operator or an admin, proved by authorisedBy; token_replaced: an admin replaced the token it was enrolled with, or admin recover)', data: ['operatorId', 'operator', 'credential', 'authorisedBy', 'reason?'] },
  webauthn_clone_suspected: { about: 'a WebAuthn assertion’s sign counter went back: the credential may be cloned (or two uses ran out of order); the approval was refused and the credential suspended', data: ['operatorId', 'credential', 'reason', 'suspended'] },
  step_up: { about: 'an approval passed step-up: which factor (totp or webauthn)', data: ['operatorId', 'factor', 'credential?', 'userVerified?', 'signCount?'] },
  mfa_locked: { about: 'too many wrong step-up codes: the operator’s step-up is locked for a growing back-off', data: ['operatorId', 'operator', 'failures', 'strikes', 'until', 'retryAfterSeconds'] },
  cooldown_lifted: { about: 'an operator of the same or higher rank ended another’s cool-down', data: ['operatorId', 'operator', 'reason', 'wasUntil'] },
  cooldown_started: { about: 'an approver was put on a cool-down (automatic or by a lead)', data: ['operatorId', 'operator', 'until', 'reason', 'triggeredBy?', 'manual?'] },
  ip_allowlist_set: { about: 'an admin set an operator’s or a role’s approval allowlist', data: ['operatorId?', 'operator?', 'role?', 'cidrs'] },
  agent_paused: { about: 'an agent was paused (by a lead or by `onSlicing: pause`)', data: ['agentId', 'agent', 'until', 'reason'] },
  agent_resumed: { about: 'a lead resumed a paused agent', data: ['agentId', 'agent', 'reason'] },
  pause_expired: { about: 'an agent’s pause ran out', data: ['agentId', 'agent', 'pausedUntil', 'reason'] },
  held: { about: 'a paused agent’s request was kept for review', data: ['agentId', 'agent', 'pausedUntil', 'reason'] },
  slicing_alert: { about: 'slicing detection found a new set of alerts for an agent', data: ['agentId', 'agent', 'confidence', 'response', 'alerts'] },
  review_forced: { about: 'an agent’s requests go to review for a while (`onSlicing: review`)', data: ['agentId', 'agent', 'until', 'alerts'] },
  aggregation_started: { about: 'an agent’s requests are collected into aggregate reviews (`onSlicing: aggregate`)', data: ['agentId', 'agent', 'until', 'alerts', 'collectionId', 'requestIds'] },
  collected: { about: 'a request was parked in its agent’s collection', data: ['collectionId', 'closesAt'] },
  aggregated: { about: 'a member request was put into an aggregate request', data: ['aggregateId'] },
  review_refused: { about: 'a review was refused (guard checks, SELF_REVIEW); written after the rollback', data: ['code', 'message'] },
  create_refused: { about: 'a create was refused (rate limit, pause); written after the rollback', data: ['code', 'message'] },
  escalation_refused: { about: 'an extend, reassign or escalate was refused: the request is decided in its aggregate review (AGGREGATED), or it is the operator’s own (SELF_REVIEW); written after the rollback', data: ['code', 'message', 'what', 'aggregateId?'] },
} as const satisfies Record<string, AuditEventSpec>;

export type AuditEventType = keyof typeof AUDIT_EVENTS;

export const AUDIT_EVENT_TYPES = Object.freeze(Object.keys(AUDIT_EVENTS) as AuditEventType[]);

/** Whether a string is a catalogued event type (a trail read back, a query filter). */
export function isAuditEventType(type: string): type is AuditEventType {
  return Object.hasOwn(AUDIT_EVENTS, type);
}
