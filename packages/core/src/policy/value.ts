/**
 * The value (amount) of a request, read from where the policy says it is (issue 12, finding 7:
 * `valueAtLeast` read only the agent's `context.value`, so a 500,000 transfer whose amount sat
 * only in `args` needed one reviewer instead of manager then director).
 *
 * - `actions.<name>.value: <path into args>` names where the amount is (`amount`,
 *   `payment.total`, `lines.0.amount`: keys joined by `.`, a number indexes an array). A path
 *   that is missing or does not hold a number sends the request to review (`value-unreadable`):
 *   the admin said the amount is there, so its absence is suspicious, not a zero.
 * - With no configured path, `args.amount` and `args.value` are both read and the largest
 *   readable one counts. They are read even when the agent also states `context.value`: an agent
 *   that claims `context.value: 1` (or `amount: 1`) next to `args.value: 500000` must not get the
 *   cheaper requirement. A fallback that is present but unreadable makes the value unreadable
 *   (even when the other fallback reads) where a `valueAtLeast` rule could use it.
 * - Numbers and numeric strings count (`"500000"`, `"500,000.00"`, `" 7900 "`); a negative
 *   amount counts by its size (moving -500,000 still moves 500,000).
 * - When the args and `context.value` both give one and they differ, the larger counts and both
 *   are reported (`Assessment.value`), so the reviewer's card can show the two.
 */
import type { CreateRequest } from '../schemas.ts';
import { normalizeActionName } from './names.ts';
import type { Policy } from './types.ts';
import { isPlainObject, own } from './util.ts';

export const FALLBACK_VALUE_PATHS: readonly string[] = Object.freeze(['amount', 'value']);

/** Numeric strings longer than this are not amounts (and are never parsed). */
const MAX_NUMERIC_CHARS = 64;
/** Plain digits or thousands groups, optional sign and decimals; unambiguous, so it cannot backtrack badly. */
const NUMERIC = /^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$/;

export interface RequestValue {
  /** What `valueAtLeast` compares: the larger of the two sources, or undefined when neither gave one. */
  readonly amount: number | undefined;
  /** The amount read from the args, and where (`amount`, or the policy's path). */
  readonly args?: { readonly path: string; readonly amount: number };
  /** The agent's own `context.value`. */
  readonly context?: number;
  /** A path that was there but unreadable (or, when configured, missing): the reason for a forced review. */
  readonly unreadable?: { readonly path: string; readonly configured: boolean; readonly reason: string };
}

/** A number from a JSON value, or undefined: finite numbers and numeric strings, by magnitude. */
export function parseAmount(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? Math.abs(value) : undefined;
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (text.length === 0 || text.length > MAX_NUMERIC_CHARS || !NUMERIC.test(text)) return undefined;
  const n = Number(text.replace(/,/g, ''));
  return Number.isFinite(n) ? Math.abs(n) : undefined;
}

/** The value at a `.`-joined path in the args: own properties only, numbers index arrays. */
export function valueAt(args: Readonly<Record<string, unknown>>, path: string): { found: true; value: unknown } | { found: false } {
  let cur: unknown = args;
  for (const seg of path.split('.')) {
    if (Array.isArray(cur)) {
      if (!/^\d{1,6}$/.test(seg)) return { found: false };
      const i = Number(seg);
      if (i >= cur.length) return { found: false };
      cur = cur[i] as unknown;
    } else if (isPlainObject(cur) && Object.hasOwn(cur, seg)) {
      cur = cur[seg];
    } else return { found: false };
  }
  return { found: true, value: cur };
}

/**
 * The request's value under the policy. `fallbackMatters` says whether an unreadable fallback
 * (`args.amount` that is not a number) should be reported as unreadable; evaluate passes true
 * when a `valueAtLeast` rule applies to the request.
 */
export function requestValue(
  request: Pick<CreateRequest, 'action' | 'args' | 'context'>,
  policy: Policy,
  fallbackMatters: boolean,
): RequestValue {
  const args = (request.args ?? {}) as Readonly<Record<string, unknown>>;
  const context = request.context?.value;
  const ctx = typeof context === 'number' && Number.isFinite(context) ? Math.abs(context) : undefined;
  const configured = own(policy.actions.byName, normalizeActionName(request.action))?.value;

  let fromArgs: { path: string; amount: number } | undefined;
  let unreadable: RequestValue['unreadable'];
  if (configured !== undefined) {
    const at = valueAt(args, configured);
    const amount = at.found ? parseAmount(at.value) : undefined;
    if (amount !== undefined) fromArgs = { path: configured, amount };
    else {
      unreadable = {
        path: configured,
        configured: true,
        reason: at.found ? `args.${configured} is not a number` : `args.${configured} is missing`,
      };
    }
  } else {
    // Every fallback is read and the largest counts: an agent that sends `amount: 1` next to
    // `value: 500000` must not get the cheaper requirement by putting the decoy first. Any
    // fallback that is present but unreadable stays unreadable even when another one reads:
    // which of the two the tool acts on is not ours to guess.
    for (const path of FALLBACK_VALUE_PATHS) {
      // `null` is "no amount" (an aggregate with no member values says `value: null`), as if absent;
      // anything else that does not read as a number is unreadable.
      if (!Object.hasOwn(args, path) || args[path] === null) continue;
      const amount = parseAmount(args[path]);
      if (amount !== undefined) {
        if (fromArgs === undefined || amount > fromArgs.amount) fromArgs = { path, amount };
      } else if (fallbackMatters && unreadable === undefined) {
        unreadable = { path, configured: false, reason: `args.${path} is not a number` };
      }
    }
  }

  const amount = fromArgs === undefined ? ctx : ctx === undefined ? fromArgs.amount : Math.max(ctx, fromArgs.amount);
  return {
    amount,
    ...(fromArgs !== undefined ? { args: fromArgs } : {}),
    ...(ctx !== undefined ? { context: ctx } : {}),
    ...(unreadable !== undefined ? { unreadable } : {}),
  };
}

/** How a value reads in a reason: `500000 (args.amount; context.value says 1)` when the sources differ. */
export function valueText(v: RequestValue): string {
  if (v.amount === undefined) return 'no value';
  if (v.args !== undefined && v.context !== undefined && v.args.amount !== v.context) {
    const other = v.amount === v.args.amount ? `context.value says ${v.context}` : `args.${v.args.path} says ${v.args.amount}`;
    return `${v.amount} (the larger: ${v.amount === v.args.amount ? `args.${v.args.path}` : 'context.value'}; ${other})`;
  }
  return String(v.amount);
}
