/**
 * What every decision from outside the dashboard shares (Teams card actions, ServiceNow and
 * Jira ticket states): the acting user of that system must map to an operator (the channel's
 * `users:`), that operator must pass the same checks as a sign-in, and the vote is
 * `engine.review` as that operator — the one gate (MFA, match code, allowlists, separation,
 * limits), judged on the payload that will run. The card or ticket showed the request as the
 * agent asked, so an approval carries that payload's hash: a payload changed since is refused
 * (PAYLOAD_CHANGED), never approved unseen. The vote's reason names the channel and the user,
 * so the trail says where the decision came from.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { CountersignError, ReviewBody, type ApprovalRequest } from '@countersign/core';
import type { Engine } from '../engine/engine.ts';
import type { Principal } from '../engine/principal.ts';

export const REQUEST_ID = /^req_[0-9a-z]{26}$/;

export function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function hmacSha256Hex(secret: string, text: string): string {
  return createHmac('sha256', secret).update(text).digest('hex');
}

/** A user id from outside, printable and short, for messages and reasons (never agent text, but not trusted either). */
export function shownId(id: string): string {
  return id.replace(/[^A-Za-z0-9@:._-]/g, '?').slice(0, 100) || '(unknown)';
}

/** The operator a channel user maps to, checked as a sign-in is; refuses (FORBIDDEN, nothing changes) otherwise. */
export async function mappedOperator(engine: Engine, users: Readonly<Record<string, string>>, user: string, where: string): Promise<Principal> {
  const name = Object.hasOwn(users, user) ? users[user] : undefined;
  if (name === undefined) throw new CountersignError('FORBIDDEN', `${where} user ${shownId(user)} is not mapped to a Countersign operator (users:)`);
  const principal = await engine.credentials.operatorPrincipal(name);
  if (!principal) throw new CountersignError('FORBIDDEN', `${where} user ${shownId(user)} maps to operator "${name}", who does not exist, is disabled or removed, or whose record does not verify`);
  return principal;
}

export interface ChannelVote {
  verdict: 'approve' | 'reject';
  alternative?: string | undefined;
  /** `via Teams (user …)`: where the vote came from, kept as the review's reason. */
  via: string;
}

/** The vote through the gate, exactly as a dashboard vote; refusals throw the gate's error and change nothing. */
export async function voteAs(engine: Engine, principal: Principal, requestId: string, vote: ChannelVote): Promise<ApprovalRequest> {
  const shown = await engine.requestById(requestId);
  const seen = shown ? { seenPayloadHash: engine.trail.payloadHash(shown.action, shown.args) } : {};
  const review =
    vote.verdict === 'approve'
      ? { verdict: 'approve', reason: vote.via, ...(vote.alternative !== undefined ? { alternative: vote.alternative } : {}), ...seen }
      : { verdict: 'reject', reason: `rejected ${vote.via}` };
  const parsed = ReviewBody.safeParse(review);
  if (!parsed.success) throw new CountersignError('VALIDATION_FAILED', `not a valid review: ${parsed.error.issues[0]?.message ?? ''}`);
  return engine.review(principal, requestId, parsed.data);
}
