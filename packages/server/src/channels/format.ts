/**
 * Escaping agent-supplied text for each channel's format. Every channel shows agent text only
 * through these, inside a block labelled `AGENT_SUPPLIED_LABEL`.
 */
import { formatDuration, formatScore, type GuardNotice, type Notification } from '@countersign/core';

/** Control, bidi and invisible characters, which can disguise text in any of the formats below. */
const INVISIBLE = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

export function stripInvisible(text: string): string {
  return text.replace(INVISIBLE, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** HTML text and attribute values. */
export function escapeHtml(text: string): string {
  return stripInvisible(text).replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch] as string);
}

/** Slack mrkdwn: `&`, `<`, `>` are the control characters (links, mentions like <!channel>). */
export function escapeSlack(text: string): string {
  return stripInvisible(text).replace(/[&<>]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[ch] as string);
}

/** Markdown as Teams renders it in Adaptive Card TextBlocks: backslash every markup character. */
export function escapeMarkdown(text: string): string {
  return stripInvisible(text).replace(/[\\`*_{}[\]()<>#+\-.!|~]/g, (ch) => `\\${ch}`);
}

/**
 * Plain text on one line (subjects, names, labels, button titles, PagerDuty summaries). Every
 * other line separator (U+000B, U+000C, U+0085, U+2028, U+2029, the C0 separators) is already
 * made visible by {@link stripInvisible}; what is left to join is CR, LF and tab.
 */
export function oneLine(text: string): string {
  return stripInvisible(text).replace(/[\r\n\t]+/g, ' ');
}

/**
 * What starts every line of agent text in plain text. Agent text can contain line breaks, so
 * without it a description could print the box's own closing line and, after it, a fake
 * "Decide in Countersign … Approve: https://…" block; with it, every line the agent wrote is
 * visibly inside the box, and the box ends only where Countersign ends it.
 */
export const AGENT_LINE_PREFIX = '| ';

/**
 * Label/value pairs of agent text as plain-text lines: each label on one line, each line of a
 * value prefixed with {@link AGENT_LINE_PREFIX} (continuation lines indented under it).
 */
export function boxedLines(pairs: Array<[string, string]>): string[] {
  return pairs.flatMap(([label, value]) => {
    const [first = '', ...rest] = stripInvisible(value)
      .split(/\r\n|\r|\n/)
      .flatMap((line, i) => hardWrap(line, i === 0 ? AGENT_LINE_WIDTH - label.length - 2 : AGENT_LINE_WIDTH - 2));
    return [`${AGENT_LINE_PREFIX}${oneLine(label)}: ${first}`, ...rest.map((line) => `${AGENT_LINE_PREFIX}  ${line}`)];
  });
}

/**
 * Agent lines are cut at this width (prefix included, about), so a mail client's soft wrap of a
 * long line cannot start a visual line without the prefix: padding a description with spaces up
 * to the wrap point would otherwise put a fake "Approve: https://…" at the left margin. The width
 * is counted in terminal columns, not UTF-16 units (review D6): a tab is expanded, and wide
 * characters (CJK, full-width forms, emoji) count two, so a line of them is cut at half the length.
 */
const AGENT_LINE_WIDTH = 76;

/** Columns a code point takes, conservatively: anything from U+1100 up may be wide, so it counts two. */
const columns = (code: number) => (code >= 0x1100 ? 2 : 1);

/** `line` in pieces of at most `width` columns (a code point is never split), at least one piece. */
function hardWrap(line: string, width: number): string[] {
  const w = Math.max(width, 20);
  const out: string[] = [];
  let piece = '';
  let used = 0;
  for (const ch of line.replace(/\t/g, '    ')) {
    const c = columns(ch.codePointAt(0) ?? 0);
    if (used + c > w) {
      out.push(piece);
      piece = '';
      used = 0;
    }
    piece += ch;
    used += c;
  }
  out.push(piece);
  return out;
}

/** `2/3 manager, 4m12s left` or `overdue 1m`. */
export function slaText(n: Notification): string {
  const level = n.sla.levels > 0 ? `level ${n.sla.level}/${n.sla.levels}${n.sla.role ? ` (${n.sla.role})` : ''}` : 'no escalation levels';
  if (n.sla.secondsLeft === null) return level;
  const left = n.sla.secondsLeft >= 0 ? `${formatDuration(n.sla.secondsLeft * 1000)} left` : `overdue ${formatDuration(-n.sla.secondsLeft * 1000)}`;
  return `${level}, ${left}${n.sla.dueAt ? ` (due ${n.sla.dueAt})` : ''}`;
}

/** The computed facts, as label/value pairs every channel shows (values here are system text or validated ids). */
export function facts(n: Notification): Array<[string, string]> {
  return [
    ['Agent', n.agent],
    ['Risk', `${n.risk.level} (score ${formatScore(n.risk.score)})`],
    ['Confidence', n.confidence === null ? 'not stated' : n.confidence.toFixed(2)],
    // Names from core's table, never from the agent (the ids are validated).
    ['ATT&CK', n.attackNames.length > 0 ? n.attackNames.join(', ') : 'none given'],
    ['SLA', slaText(n)],
  ];
}

/** The agent's own words, as label/value pairs (every value must be escaped by the caller's format). */
export function agentFacts(n: Notification): Array<[string, string]> {
  const a = n.agentSupplied;
  const out: Array<[string, string]> = [];
  if (a.description) out.push(['Description', a.description]);
  out.push(['Args', a.args]);
  if (a.target) out.push(['Target', a.target]);
  out.push(['Blast radius', a.blastRadius ?? 'not stated']);
  a.evidence.forEach((e, i) => out.push([`Evidence ${i + 1}`, e]));
  if (a.relatedIncidents.length > 0) out.push(['Related incidents', a.relatedIncidents.join(', ')]);
  for (const alt of a.alternatives) out.push([`Alternative "${alt.name}"`, `${alt.action}${alt.description ? `: ${alt.description}` : ''}`]);
  return out;
}

/**
 * `Approve`, `Approve alternative "quarantine"`, `Reject`: the action's label with the agent's
 * alternative name, quoted. It sits in link lists next to real links, so a name that still holds
 * what the schema now refuses (an older row: `://`, quotes, runs of spaces; review D7) is shown
 * defused: quotes as `'`, whitespace runs as one space, `://` as `:\/\/` (never auto-linked).
 */
export function actionLabel(action: Notification['actions'][number]): string {
  if (action.alternative === null) return action.label;
  const name = oneLine(action.alternative).replace(/\s+/g, ' ').replaceAll('"', "'").replaceAll('://', ':\\/\\/');
  return `${action.label} "${name}"`;
}

/**
 * `approved by alice at …` and the reason. An agent's reason (it cancelled) is agent text: with
 * `agentReason: false` it is left out, for channels that show it inside their agent-supplied box
 * instead ({@link agentReason}).
 */
export function decisionText(n: Notification, options: { agentReason?: boolean } = {}): string | null {
  const d = n.decision;
  if (!d) return null;
  const showReason = d.reason && (!d.reasonFromAgent || options.agentReason !== false);
  const note = d.reason && !showReason ? ' — the agent gave a reason (shown with the agent-supplied text)' : '';
  return `${d.outcome} by ${d.by} at ${d.at}${showReason ? ` — ${d.reasonFromAgent ? `(agent-supplied) ` : ''}${d.reason}` : note}`;
}

/** The reason an agent gave for its own decision (a cancellation), as an agent-supplied pair, or none. */
export function agentReason(n: Notification): Array<[string, string]> {
  const d = n.decision;
  return d?.reason && d.reasonFromAgent ? [['Reason the agent gave', d.reason]] : [];
}

/**
 * A guard notice's facts, as label/value pairs every channel shows: names (validated), times and
 * the policy's response. The reason (operator free text) and alert descriptions (agent-influenced)
 * are not among them: channels show `reason` as an escaped value and alerts via `guardAgentFacts`.
 */
export function guardFacts(n: GuardNotice): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  if (n.agent !== null) out.push(['Agent', n.agent]);
  if (n.operator !== null) out.push(['Approver', n.operator]);
  out.push(['By', n.by]);
  if (n.until !== null) out.push(['Until', n.until]);
  if (n.response !== null) out.push(['Response', n.response]);
  if (n.confidence !== null) out.push(['Confidence', n.confidence.toFixed(2)]);
  out.push(['At', n.at]);
  return out;
}

/**
 * Slicing alerts, for the agent-supplied block: the label is the alert type and its confidence
 * (system text), the value the description, which can carry the agent's action and argument
 * names (every value must be escaped by the caller's format).
 */
export function guardAgentFacts(n: GuardNotice): Array<[string, string]> {
  return n.agentSupplied.alerts.map((a) => [`${a.type} (confidence ${a.confidence.toFixed(2)})`, a.description]);
}
