/**
 * Prompt-injection screening on the card: each field the screen flagged, its text with the
 * flagged spans marked (`<mark>` around React text: the agent's text stays inert, a span only
 * says where the marking starts and ends), why, and the reviewer's screening verdict — which is
 * separate from approve/reject. And the learning loop's rates and proposals for the metrics page.
 */
import type { ApprovalRequest } from '@countersign/core';
import { useEffect, useState } from 'react';
import { api, ApiError, type ScreeningReport } from '../api.ts';
import { SafeText } from '../components/SafeText.tsx';
import { markSpans, textAtField, type Finding } from '../findings.ts';

type Verdict = 'injection' | 'not_injection' | 'unsure';
const VERDICTS: [Verdict, string][] = [
  ['injection', 'Injection'],
  ['not_injection', 'Not injection'],
  ['unsure', 'Unsure'],
];

export function ScreeningSection({ request }: { request: ApprovalRequest }) {
  const s = request.assessment.screening;
  if (!s) return null;
  const byField = new Map<string, { finding: Finding; index: number }[]>();
  s.findings.forEach((finding, index) => {
    const list = byField.get(finding.field) ?? [];
    list.push({ finding, index });
    byField.set(finding.field, list);
  });
  return (
    <section className="screening computed-zone" aria-labelledby="screening-title" data-testid="screening">
      <h2 id="screening-title">Prompt-injection screening</h2>
      <p>
        Score <strong>{s.score.toFixed(2)}</strong> · screen action <strong>{s.action}</strong> · severity {s.severity}
        {s.overBudget && <span className="warn-text"> · part of the text was not screened (over the budget): reviewed for that reason</span>}
      </p>
      <p className="muted small">Marked spans are what the screen flagged. The text is the agent's, shown as plain text; a verdict here teaches the screen and does not approve or reject.</p>
      {[...byField.entries()].map(([field, list]) => (
        <FieldFindings key={field} request={request} field={field} findings={list} />
      ))}
    </section>
  );
}

function FieldFindings({ request, field, findings }: { request: ApprovalRequest; field: string; findings: { finding: Finding; index: number }[] }) {
  const text = textAtField(request, field);
  const marked = text === undefined ? null : markSpans(text, findings.map((f) => ({ span: f.finding.span, index: f.index })));
  return (
    <div className="screen-field" data-field={field}>
      {/* The path holds the agent's keys (bounded by core): it is agent text, shown in the agent zone, never as a computed heading. */}
      <h3 className="screen-path agent-zone compact">
        <span className="zone-tag">field (agent-written keys)</span> <span className="mono"><SafeText text={field} inline noExpand max={400} /></span>
      </h3>
      {marked ? (
        <p className="screen-text agent-zone compact" data-testid="screen-text">
          {marked.pieces.map((p, i) =>
            p.marked ? (
              <mark key={i} className="screen-mark" data-findings={p.findings.join(',')} title={`finding ${p.findings.map((n) => n + 1).join(', ')}`}>
                <SafeText text={p.text} inline noExpand max={100_000} />
              </mark>
            ) : (
              <SafeText key={i} text={p.text} inline noExpand max={100_000} />
            ),
          )}
        </p>
      ) : (
        <p className="muted">(the field's text is not available to show)</p>
      )}
      <ol className="screen-findings">
        {findings.map(({ finding, index }) => (
          <li key={index} value={index + 1}>
            <span className="mono">{finding.kind}</span> · {finding.score.toFixed(2)} · {finding.why}{' '}
            <VerdictButtons requestId={request.id} finding={index} />
          </li>
        ))}
      </ol>
    </div>
  );
}

function VerdictButtons({ requestId, finding }: { requestId: string; finding: number }) {
  const [state, setState] = useState<{ done?: Verdict; error?: string; busy?: boolean }>({});
  const give = async (verdict: Verdict) => {
    setState({ busy: true });
    try {
      await api.screenVerdict(requestId, finding, verdict);
      setState({ done: verdict });
    } catch (err) {
      setState({ error: err instanceof ApiError ? err.message : String(err) });
    }
  };
  return (
    <span className="verdict-buttons" role="group" aria-label={`screening verdict on finding ${finding + 1}`}>
      {VERDICTS.map(([v, label]) => (
        <button key={v} type="button" className="small" disabled={state.busy} aria-pressed={state.done === v} onClick={() => void give(v)}>
          {label}
        </button>
      ))}
      {state.done && <span role="status"> recorded: {state.done.replace('_', ' ')}</span>}
      {state.error && <span role="alert" className="error"> {state.error}</span>}
    </span>
  );
}

const pct = (x: number | null | undefined) => (x === null || x === undefined ? 'n/a' : `${(x * 100).toFixed(1)} %`);

/** The learning loop on the metrics page: rates from verdicts and each channel's threshold proposal with its measured effect. */
export function ScreeningMetrics() {
  const [report, setReport] = useState<ScreeningReport | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.screeningReport().then(setReport, (err: unknown) => setError(err instanceof ApiError ? err.message : String(err)));
  }, []);
  if (error) return <p className="muted">Screening report unavailable: {error}</p>;
  if (!report) return <p className="muted">Loading the screening report…</p>;
  const fn = report.rates.falseNegativeRate;
  return (
    <section aria-labelledby="screen-metrics-title" data-testid="screening-metrics">
      <h2 id="screen-metrics-title">Prompt-injection screening</h2>
      <dl className="facts">
        <dt>Detection rate</dt>
        <dd data-testid="screen-detection">{pct(report.rates.detectionRate)}</dd>
        <dt>False-positive rate</dt>
        <dd>{pct(report.rates.falsePositiveRate)}</dd>
        <dt>False-negative rate</dt>
        <dd>{fn ? `${pct(fn.rate)} (${pct(fn.lower)}–${pct(fn.upper)}, ${fn.audited} audited)` : 'n/a (no audit-sampled item judged yet)'}</dd>
        <dt>Verdicts counted</dt>
        <dd>
          {report.window.verdicts} since {new Date(report.window.since).toLocaleDateString()} · each reviewer weighs at most {report.guard.maxWeightPerSource}
        </dd>
      </dl>
      {Object.values(report.calibration).map((p) => (
        <div key={p.channel}>
          <h3>Channel {p.channel}: flag threshold {p.current.threshold}</h3>
          {p.proposed === null || !p.atProposed ? (
            <p className="muted">No proposal: {p.reason}</p>
          ) : (
            <p>
              Proposed {p.proposed.toFixed(4)} (FPR {pct(p.atProposed.fpr)}, bound {pct(p.atProposed.fprUpper)}, recall {pct(p.atProposed.recall)}): {p.effect.newlyFlagged} newly
              flagged, {p.effect.newlyAllowed} newly allowed among judged items. Not applied — an admin edits the policy to apply it.
            </p>
          )}
        </div>
      ))}
    </section>
  );
}
