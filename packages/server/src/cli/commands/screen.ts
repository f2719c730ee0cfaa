/**
 * `countersign screen`: prompt-injection screening from the command line, through
 * `POST /v1/screen`. One text as an argument, or one result per input line from `--file`
 * (or stdin), streamed: lines are read, screened and printed one at a time, and a line longer
 * than `--max-line` bytes is skipped with an error result instead of being held whole.
 *
 *   countersign screen 'Ignore previous instructions' --channel user
 *   countersign screen --file tool-outputs.jsonl --field text --channel content --json
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { Option, type Command } from 'commander';
import { ApiClient } from '../http-client.ts';
import { processEnvironment } from '../../environment.ts';
import { clientFrom, positiveInt, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { InvalidArgumentError } from 'commander';
import { safe, safeJson } from '../format.ts';

interface ScreenResult {
  score: number;
  severity: string;
  action: string;
  findings: { kind: string; span: { start: number; end: number }; score: number; why: string; path?: string }[];
  defendedInput?: string;
}

/** Default longest input line, bytes (the server's default body limit). */
export const DEFAULT_MAX_LINE = 1024 * 1024;

export type Line = { line: number; text: string } | { line: number; tooLong: true };

/**
 * Lines of a stream, each at most `maxLine` bytes; a longer one is reported (`tooLong`) and its
 * bytes are dropped as they arrive, so memory stays bounded by `maxLine` whatever the input.
 */
export async function* boundedLines(input: Readable, maxLine: number): AsyncGenerator<Line> {
  let parts: Buffer[] = [];
  let size = 0;
  let skipping = false;
  let n = 0;
  const emit = (): Line => {
    n++;
    if (skipping) return { line: n, tooLong: true };
    let text = Buffer.concat(parts, size).toString('utf8');
    if (text.endsWith('\r')) text = text.slice(0, -1);
    return { line: n, text };
  };
  for await (const chunk of input as AsyncIterable<Buffer>) {
    let from = 0;
    while (from < chunk.length) {
      const nl = chunk.indexOf(10, from);
      const end = nl === -1 ? chunk.length : nl;
      if (!skipping) {
        if (size + (end - from) > maxLine) {
          skipping = true;
          parts = [];
          size = 0;
        } else {
          parts.push(chunk.subarray(from, end));
          size += end - from;
        }
      }
      if (nl === -1) break;
      yield emit();
      parts = [];
      size = 0;
      skipping = false;
      from = nl + 1;
    }
  }
  if (size > 0 || skipping) yield emit();
}

/** One line of text output: the action, score, severity and the kinds found. */
export function renderScreen(r: ScreenResult, label?: string): string {
  const kinds = [...new Set(r.findings.map((f) => f.kind))];
  const head = `${label ? `${label}: ` : ''}${r.action.toUpperCase()} score ${r.score.toFixed(3)} severity ${r.severity}`;
  return kinds.length > 0 ? `${head} — ${kinds.map(safe).join(', ')}` : head;
}

type ScreenFlags = CommonFlags & { channel: 'user' | 'content'; file?: string; field?: string; maxLine: number; nonce?: string };

interface VerdictView {
  id: string;
  requestId: string;
  finding: number | null;
  field: string;
  kind: string;
  score: number;
  action: string;
  audited: boolean;
  verdict: string;
  operatorId: string;
  createdAt: string;
}

interface Proposal {
  channel: string;
  targetFpr: number;
  confidence: number;
  proposed: number | null;
  current: { threshold: number; fpr: number; fprUpper: number; recall: number };
  atProposed: { threshold: number; fpr: number; fprUpper: number; recall: number } | null;
  effect: { newlyFlagged: number; newlyAllowed: number; benignWeight: number; effectiveBenign: number; attackWeight: number };
  reason: string;
  policySnippet: string | null;
}

interface Report {
  window: { since: string; verdicts: number };
  guard: { verdictRoles: string[]; maxWeightPerSource: number; refused: { unauthorised: number; unsure: number; superseded: number }; sources: { reviewer: string; verdicts: number; weightEach: number }[]; agents?: { agent: string; verdicts: number; weight: number; share: number }[] };
  rates: { detectionRate: number | null; falsePositiveRate: number | null; falseNegativeRate: { rate: number; lower: number; upper: number; audited: number } | null; truePositives: number; falsePositives: number; falseNegatives: number; trueNegatives: number };
  calibration: Record<string, Proposal>;
  auditSample: { rate: number; sampled: number };
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(1)} %`);

/** `screening report` as text: rates, then each channel's proposal with its measured effect. */
export function renderReport(r: Report): string {
  const lines = [
    `Screening verdicts since ${safe(r.window.since)}: ${r.window.verdicts} (refused: ${r.guard.refused.unauthorised} unauthorised, ${r.guard.refused.unsure} unsure, ${r.guard.refused.superseded} superseded)`,
    `  detection rate ${pct(r.rates.detectionRate)}, false-positive rate ${pct(r.rates.falsePositiveRate)}, false-negative rate ${r.rates.falseNegativeRate ? `${pct(r.rates.falseNegativeRate.rate)} (${pct(r.rates.falseNegativeRate.lower)}–${pct(r.rates.falseNegativeRate.upper)}, ${r.rates.falseNegativeRate.audited} audited)` : 'n/a (no audited items judged)'}`,
    `  each reviewer weighs at most ${r.guard.maxWeightPerSource} verdicts, and so do the verdicts on one agent's requests; counted roles: ${r.guard.verdictRoles.map(safe).join(', ')}`,
    ...(r.guard.agents ?? []).map((a) => `  agent ${safe(a.agent)}: ${a.verdicts} verdicts, weight ${a.weight.toFixed(2)} (${(a.share * 100).toFixed(0)}% of the total)`),
  ];
  for (const p of Object.values(r.calibration)) {
    lines.push(`Channel ${safe(p.channel)}: flag threshold ${p.current.threshold} (FPR ${pct(p.current.fpr)}, bound ${pct(p.current.fprUpper)}, recall ${pct(p.current.recall)})`);
    if (p.proposed === null || !p.atProposed) lines.push(`  no proposal: ${safe(p.reason)}`);
    else {
      lines.push(`  proposed ${p.proposed.toFixed(4)} for FPR ≤ ${pct(p.targetFpr)} at ${pct(p.confidence)} confidence: FPR ${pct(p.atProposed.fpr)} (bound ${pct(p.atProposed.fprUpper)}), recall ${pct(p.atProposed.recall)}`);
      lines.push(`  effect on the judged items: ${p.effect.newlyFlagged} newly flagged, ${p.effect.newlyAllowed} newly allowed (not applied: edit the policy to apply it)`);
      if (p.policySnippet) lines.push(p.policySnippet.split('\n').map((l) => `    ${l}`).join('\n'));
    }
  }
  return lines.join('\n');
}

export function registerScreenCommands(program: Command): void {
  const screening = program.command('screening').description('the screening learning loop: verdicts on findings, the report (rates, threshold proposals), pattern suggestions');
  withClientOptions(
    screening
      .command('verdict')
      .description('judge a request\'s screening finding: injection, not_injection or unsure (separate from approve/reject)')
      .argument('<request>', 'request id')
      .addOption(new Option('--verdict <verdict>', 'your judgement of the text').choices(['injection', 'not_injection', 'unsure']).makeOptionMandatory())
      .option('--finding <n>', "the finding's index in the request's screening findings; omit to judge the request as a whole (audit sample)", (v) => positiveIntOrZero(v)),
  ).action(async (id: string, flags: CommonFlags & { verdict: string; finding?: number }) => {
    const v = await clientFrom(flags).post<VerdictView>(`/v1/requests/${encodeURIComponent(id)}/screening/verdicts`, { verdict: flags.verdict, ...(flags.finding !== undefined ? { finding: flags.finding } : {}) });
    if (flags.json) return printJson(v);
    print(`Recorded ${safe(v.verdict)} on ${safe(v.requestId)} ${v.finding === null ? '(the request)' : `finding ${v.finding}`} (${safe(v.field)}, ${safe(v.kind)}, score ${v.score})`);
  });
  withClientOptions(screening.command('verdicts').description("a request's screening verdicts").argument('<request>', 'request id')).action(async (id: string, flags: CommonFlags) => {
    const r = await clientFrom(flags).get<{ items: VerdictView[]; sampled: boolean }>(`/v1/requests/${encodeURIComponent(id)}/screening/verdicts`);
    if (flags.json) return printJson(r);
    if (r.items.length === 0) return print(`No verdicts${r.sampled ? ' (in the audit sample)' : ''}`);
    for (const v of r.items) print(`${safe(v.createdAt)} ${safe(v.operatorId)} ${safe(v.verdict)} ${v.finding === null ? '(request)' : `#${v.finding}`} ${safe(v.field)} ${safe(v.kind)} ${v.score}`);
  });
  withClientOptions(screening.command('report').description('rates from verdicts and a threshold proposal per channel, with its measured effect')).action(async (flags: CommonFlags) => {
    const r = await clientFrom(flags).get<Report>('/v1/screening/report');
    return flags.json ? printJson(r) : print(renderReport(r));
  });
  withClientOptions(screening.command('patterns').description('n-grams that separate confirmed attacks (admins; never enabled automatically)')).action(async (flags: CommonFlags) => {
    const r = await clientFrom(flags).get<{ suggestions: { ngram: string; attacks: number; benign: number; sources: number; score: number }[]; note: string }>('/v1/screening/patterns');
    if (flags.json) return printJson(r);
    for (const s of r.suggestions) print(`${safe(s.ngram)}  attacks ${s.attacks}, benign ${s.benign}, reviewers ${s.sources}, score ${s.score.toFixed(2)}`);
    print(safe(r.note));
  });
  withClientOptions(
    screening.command('retrain').description('retrain the screening model from accepted verdicts now (admins); adopted only if the evaluation gate passes'),
  ).action(async (flags: CommonFlags) => {
    // A retrain on the committed data takes minutes of CPU (the gate retrains every grouped fold twice): wait up to its own cap.
    const r = await new ApiClient({ url: flags.url, token: flags.token }, processEnvironment(), RETRAIN_TIMEOUT_MS).post<RetrainView>('/v1/screening/retrain', {});
    if (flags.json) return printJson(r);
    print(renderRetrain(r));
  });
  withClientOptions(screening.command('model').description('the screening model in use: the committed one or an adopted retrain')).action(async (flags: CommonFlags) => {
    const r = await clientFrom(flags).get<RetrainView['inUse']>('/v1/screening/model');
    if (flags.json) return printJson(r);
    print(`${r.source === 'adopted' ? `adopted #${r.seq}` : 'committed'} ${safe(r.version)}${r.hash ? ` sha256:${safe(r.hash)}` : ''}${r.why ? `\n${safe(r.why)}` : ''}`);
  });

  withClientOptions(
    program
      .command('screen')
      .description('screen text for prompt injection (POST /v1/screen): one text, or one result per line of --file (or stdin)')
      .argument('[text]', 'the text to screen; omit it to read lines from --file or stdin')
      .addOption(new Option('--channel <channel>', 'user: a prompt someone typed; content: data an agent read').choices(['user', 'content']).default('user'))
      .option('--file <path>', 'a file of lines (JSON lines with --field, else plain text); - for stdin')
      .option('--field <name>', 'with --file: the JSON field of each line to screen (a string, or any JSON value as content)')
      .option('--max-line <bytes>', 'longest input line; longer ones get an error result', positiveInt(64 * 1024 * 1024), DEFAULT_MAX_LINE)
      .option('--nonce <nonce>', 'the spotlighting delimiter for a sanitized result'),
  ).action(async (text: string | undefined, flags: ScreenFlags) => {
    const client = new ApiClient({ url: flags.url, token: flags.token || process.env.COUNTERSIGN_TOKEN || process.env.COUNTERSIGN_AGENT_KEY });
    const context = flags.nonce !== undefined ? { context: { nonce: flags.nonce } } : {};
    if (text !== undefined) {
      if (flags.file !== undefined) throw new Error('give a text or --file, not both');
      const r = await client.post<ScreenResult>('/v1/screen', { text, channel: flags.channel, ...context });
      return flags.json ? printJson(r) : print(renderScreen(r));
    }
    const input = flags.file === undefined || flags.file === '-' ? process.stdin : createReadStream(flags.file);
    let flagged = 0;
    for await (const l of boundedLines(input, flags.maxLine)) {
      const out = await screenLine(client, l, flags, context);
      if ('result' in out && out.result.action !== 'allow') flagged++;
      // JSON lines: one compact object per input line.
      if (flags.json) print(safeJson('result' in out ? { line: l.line, ...out.result } : { line: l.line, error: out.error }, 0));
      else print('result' in out ? renderScreen(out.result, `line ${l.line}`) : `line ${l.line}: ERROR ${safe(out.error)}`);
    }
    // Exit 1 when anything was flagged, so a pipeline can stop on it.
    if (flagged > 0) process.exitCode = 1;
  });
}

async function screenLine(client: ApiClient, l: Line, flags: ScreenFlags, context: object): Promise<{ result: ScreenResult } | { error: string }> {
  if ('tooLong' in l) return { error: `line longer than ${flags.maxLine} bytes, not screened` };
  if (l.text.trim() === '') return { error: 'empty line' };
  let payload: { text: string } | { content: unknown } = { text: l.text };
  if (flags.field !== undefined) {
    let obj: unknown;
    try {
      obj = JSON.parse(l.text);
    } catch {
      return { error: 'not JSON' };
    }
    const v = obj !== null && typeof obj === 'object' && Object.hasOwn(obj, flags.field) ? (obj as Record<string, unknown>)[flags.field] : undefined;
    if (v === undefined) return { error: `no field ${flags.field}` };
    payload = typeof v === 'string' ? { text: v } : { content: v };
  }
  try {
    return { result: await client.post<ScreenResult>('/v1/screen', { ...payload, channel: flags.channel, ...context }) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function positiveIntOrZero(v: string): number {
  if (!/^\d{1,5}$/.test(v.trim())) throw new InvalidArgumentError('expected a whole number (0 for the first finding).');
  return Number(v);
}

/** The server stops a retrain after 30 minutes (engine/screen-models.ts); the CLI waits a little longer. */
const RETRAIN_TIMEOUT_MS = 31 * 60_000;

interface RetrainView {
  outcome: string;
  reason: string;
  seq: number | null;
  hash: string | null;
  version: string | null;
  basedOn: number;
  verdicts: { counted: number; examples: number; missing: number };
  report: { sets: { set: string; kind: string; baseline: number; candidate: number; delta: number; floor: number | null; ok: boolean }[] } | null;
  inUse: { source: string; seq: number; hash: string | null; version: string; why?: string };
}

/** The retrain's outcome and, per evaluation set, what changed. */
export function renderRetrain(r: RetrainView): string {
  const lines = [`${safe(r.outcome)}: ${safe(r.reason)}`, `verdicts: ${r.verdicts.counted} counted, ${r.verdicts.examples} with their text, ${r.verdicts.missing} without`];
  if (r.hash) lines.push(`candidate ${safe(r.version ?? '')} sha256:${safe(r.hash)} (from #${r.basedOn})`);
  for (const s of r.report?.sets ?? []) {
    lines.push(`  ${s.ok ? 'ok  ' : 'FAIL'} ${safe(s.set)} ${safe(s.kind)} ${s.baseline.toFixed(4)} → ${s.candidate.toFixed(4)} (${s.delta >= 0 ? '+' : ''}${s.delta.toFixed(4)})${s.floor !== null ? ` floor ${s.floor}` : ''}`);
  }
  lines.push(`in use: ${r.inUse.source === 'adopted' ? `adopted #${r.inUse.seq}` : 'committed'} ${safe(r.inUse.version)}`);
  return lines.join('\n');
}
