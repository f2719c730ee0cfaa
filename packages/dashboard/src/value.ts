/**
 * The value lines of a request card (issue 12): what the policy compared (`assessment.value`,
 * core policy/value.ts — the larger of the args' amount and the agent's `context.value`), and
 * where each number came from, so an agent that claims a small `context.value` beside a large
 * `args.amount` cannot make the card headline the small one.
 */
import type { Assessment } from '@countersign/core';

export interface ValueLine {
  /** What the number is. */
  readonly label: string;
  readonly text: string;
  /** The number the policy counted. */
  readonly counted?: boolean;
}

const fmt = (n: number) => n.toLocaleString('en-US');

/** The lines to show, or none when the request names no value at all. `claimed` is the raw `context.value`, whatever its type. */
export function valueLines(value: Assessment['value'], claimed: unknown, hasClaim: boolean): ValueLine[] {
  if (!value) {
    // No number the policy could read: the agent's claim is shown as it is, marked so.
    return hasClaim ? [{ label: 'Value (claimed, not a number the policy read)', text: typeof claimed === 'string' ? claimed : JSON.stringify(claimed) ?? String(claimed) }] : [];
  }
  const lines: ValueLine[] = [{ label: 'Value (what the policy counted)', text: fmt(value.amount), counted: true }];
  const both = value.args !== undefined && value.context !== undefined;
  if (value.args !== undefined) lines.push({ label: `in args.${value.args.path}`, text: fmt(value.args.amount) });
  if (value.context !== undefined) lines.push({ label: 'claimed by the agent (context.value)', text: fmt(value.context) });
  if (both && value.args!.amount !== value.context) lines.push({ label: 'they differ', text: 'the larger counts' });
  return lines;
}
