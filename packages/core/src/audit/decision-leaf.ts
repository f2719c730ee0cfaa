/**
 * Does an audit leaf record this decision? The check behind the SDK's `verifyInclusion`: a
 * decision shown in a signed checkpoint is only worth something if the leaf says who decided,
 * not just that something was decided. The expected leaf data is rebuilt from the decision (and
 * its receipt's payload hash) and compared field by field with the leaf's; a leaf that is not in
 * canonical form (so its bytes could be read two ways) is refused outright.
 *
 * The trail stores free text redacted with a server-keyed token (audit/redact.ts): a reason that
 * held an email is stored as `[email:<20 hex>]`. The verifier cannot compute the token, so it
 * redacts the decision's text with a placeholder token and accepts any token of the same kind in
 * the same place. Identities are never redacted (deciders, ids), so who decided is compared exactly.
 */
import { canonicalJson } from '../canonical.ts';
import type { Decision } from '../schemas.ts';
import { createRedactor } from './redact.ts';

const PLACEHOLDER = '0'.repeat(20);
/** A redaction token (its kind and a 20-hex-digit keyed hash): fixed-length pieces, no nested repetition. */
const TOKEN = /\[([a-z_]{1,32}):[0-9a-f]{20}\]/g;
const placeholders = createRedactor({ tokenize: () => PLACEHOLDER });
const normalizeTokens = (json: string) => json.replace(TOKEN, (_m, kind: string) => `[${kind}:${PLACEHOLDER}]`);

export interface DecisionLeafExpectation {
  /** The entry's position (the proof's `seq`). */
  seq: number;
  requestId: string;
  decision: Decision;
  /** The receipt's payload hash (null unless it approved something to run). */
  payloadHash: string | null;
}

/** Null when `leafJson` is the decision's own audit entry, else why not. */
export function decisionLeafProblem(leafJson: string, expected: DecisionLeafExpectation): string | null {
  let leaf: unknown;
  try {
    leaf = JSON.parse(leafJson);
  } catch {
    return 'the leaf is not JSON';
  }
  if (typeof leaf !== 'object' || leaf === null || Array.isArray(leaf)) return 'the leaf is not a JSON object';
  if (canonicalJson(leaf) !== leafJson) return 'the leaf is not in canonical form';
  const l = leaf as { seq?: unknown; requestId?: unknown; type?: unknown; at?: unknown; actor?: { type?: unknown; id?: unknown }; data?: unknown };
  const { decision } = expected;
  if (l.seq !== expected.seq) return `the leaf is entry ${String(l.seq)}, not ${expected.seq}`;
  if (l.requestId !== expected.requestId || l.type !== decision.outcome) return `the leaf is a ${String(l.type)} entry of ${String(l.requestId)}`;
  if (l.at !== decision.at) return 'the leaf records another decision time';
  if (typeof l.data !== 'object' || l.data === null || Array.isArray(l.data)) return 'the leaf has no decision data';
  const data = l.data as Record<string, unknown>;
  // The reviewer whose vote decided is the entry's actor: one of the receipt's deciders.
  if (l.actor?.type === 'operator' && !decision.deciders.some((d) => d.type === 'operator' && d.id === l.actor?.id)) return `the leaf's actor ${String(l.actor.id)} is not one of the receipt's deciders`;
  const names = decision.deciders.map((d) => d.name);
  if (!Object.hasOwn(data, 'deciders')) {
    if (names.length > 0) return 'the leaf records no deciders, the receipt names some';
  } else if (canonicalJson(data.deciders ?? null) !== canonicalJson(names)) return 'the leaf records other deciders than the receipt';
  if (data.decidedBy !== decision.decidedBy) return 'the leaf records another kind of decision';
  if ((data.payloadHash ?? null) !== expected.payloadHash) return 'the leaf binds another payload than the receipt';
  const want = placeholders.redact({ reason: decision.reason ?? null, alternative: decision.alternative ?? null, modified: decision.modified }) as Record<string, unknown>;
  for (const [field, fallback] of [['reason', null], ['alternative', null], ['modified', false]] as const) {
    const have = Object.hasOwn(data, field) ? data[field] : fallback;
    if (normalizeTokens(canonicalJson(have ?? null)) !== normalizeTokens(canonicalJson(want[field] ?? null))) return `the leaf records another ${field === 'modified' ? 'modification' : field}`;
  }
  return null;
}
