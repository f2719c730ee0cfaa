/**
 * Whether a change to an agent's configuration loosens the gate for that agent (issue 18,
 * four-eyes on admin power). A loosening is a Countersign request another admin must approve
 * (unless `admin.singleAdmin`); a change with no loosening applies at once.
 *
 * It compares the two policies *as they apply to the agent* (overlay.ts `flatOf`: the agent's
 * settings, else the global ones), key by key, with the same order the overlay merge uses
 * (overlay.ts `KEYS`): going from `before` to `after` loosens key `k` when `before` is stricter
 * than `after` in some respect. So a key that moves from the file to the overlay with the same
 * value is no change, every setting an agent config can touch is looked at, and what one admin
 * may change alone can never make what applies looser. Where the direction of a change is not
 * clear (the slicing collection time; an SLA shortened while `onFinalTimeout: approve` would
 * approve sooner, or while an escalation level is a `finalAuthority` — one person deciding alone
 * instead of the quorum, sooner) it counts as loosening: when in doubt, a second admin looks.
 *
 * @example
 *   weakens(before, after, 'billing-bot')
 *   // → [{ key: 'enabled', before: false, after: true, why: 'enables the agent' }]
 */
import { flatOf, KEYS } from './overlay.ts';
import type { Policy } from './types.ts';

export interface Loosening {
  /** The agent config key, e.g. `levels.medium.autoApprove`, `requireApproval`. */
  readonly key: string;
  readonly before: unknown;
  readonly after: unknown;
  /** In words, for the reviewer's card and the audit trail. */
  readonly why: string;
}

/** The loosenings from `before` to `after` for agent `name` (both policies already carry the agent's overlay). Empty: the change only tightens or keeps. */
export function weakens(before: Policy, after: Policy, name: string): Loosening[] {
  const out: Loosening[] = [];
  const a = flatOf(before, name);
  const b = flatOf(after, name);
  const finalApprove = before.escalation.onFinalTimeout === 'approve' || after.escalation.onFinalTimeout === 'approve';
  // A final authority (escalation/final-authority.ts) lets one person decide alone once the chain reaches it.
  const finalAuthority = [before, after].some((p) => p.escalation.levels.some((l) => l.finalAuthority === true));
  for (const rule of KEYS) {
    const x = a[rule.key]!;
    const y = b[rule.key]!;
    if (rule.order.tighter(x, y)) out.push({ key: rule.key, before: x, after: y, why: rule.why(x, y) });
    else if ((finalApprove || finalAuthority) && rule.key.endsWith('.sla') && typeof x === 'number' && typeof y === 'number' && y < x) {
      const lvl = rule.key.split('.')[1];
      const why = finalApprove ? 'while onFinalTimeout: approve (silence approves sooner)' : 'while the escalation chain ends in a finalAuthority level (one person decides alone sooner)';
      out.push({ key: rule.key, before: x, after: y, why: `a shorter deadline at ${lvl} risk ${why}` });
    }
  }
  return out;
}
