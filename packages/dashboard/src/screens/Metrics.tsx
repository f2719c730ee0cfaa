/**
 * Review metrics, computed server-side (`GET /v1/metrics/summary`), drawn with Chart.js.
 * Each chart has a text alternative (its numbers in a table) for screen readers.
 */
import { ScreeningMetrics } from './Screening.tsx';
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
  type ChartConfiguration,
} from 'chart.js';
import { useEffect, useMemo, useRef, useState } from 'react';
import { api, type MetricsSummary, type Rates } from '../api.ts';
import { explain } from '../components/Dialogs.tsx';
import { SafeText } from '../components/SafeText.tsx';
import { duration, percent } from '../format.ts';

Chart.register(LineController, BarController, LineElement, PointElement, BarElement, CategoryScale, LinearScale, Legend, Tooltip);

const RANGES = {
  '24h': { hours: 24, bucket: 'hour' },
  '7d': { hours: 7 * 24, bucket: 'day' },
  '30d': { hours: 30 * 24, bucket: 'day' },
} as const;
type RangeKey = keyof typeof RANGES;

const COLORS = ['#1f5fbf', '#b35900', '#6b3fa0', '#137a3a', '#b3261e'];

function ChartCanvas({ config, label }: { config: ChartConfiguration; label: string }) {
  const ref = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!ref.current) return;
    const chart = new Chart(ref.current, config);
    return () => chart.destroy();
  }, [config]);
  return (
    <div className="chart-box">
      <canvas ref={ref} role="img" aria-label={label} />
    </div>
  );
}

function lineConfig(labels: string[], series: Array<{ label: string; data: Array<number | null> }>, yTitle: string, max?: number): ChartConfiguration {
  return {
    type: 'line',
    data: {
      labels,
      datasets: series.map((s, i) => ({ label: s.label, data: s.data, borderColor: COLORS[i % COLORS.length], backgroundColor: COLORS[i % COLORS.length], spanGaps: true, tension: 0.2 })),
    },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, ...(max !== undefined ? { max } : {}), title: { display: true, text: yTitle } } },
      plugins: { legend: { position: 'bottom' } },
    },
  };
}

function bucketLabel(iso: string, bucket: 'hour' | 'day'): string {
  const d = new Date(iso);
  return bucket === 'hour' ? d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }) : d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
}

const pct = (v: number | null) => (v === null ? null : Math.round(v * 1000) / 10);

export function MetricsScreen() {
  const [range, setRange] = useState<RangeKey>('7d');
  const [summary, setSummary] = useState<MetricsSummary | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const { hours, bucket } = RANGES[range];
    const now = Date.now();
    const size = bucket === 'hour' ? 3_600_000 : 86_400_000;
    const to = Math.ceil(now / size) * size;
    setSummary(null);
    api.summary({ from: new Date(to - hours * 3_600_000).toISOString(), to: new Date(to).toISOString(), bucket }).then(setSummary, (err: unknown) => setError(explain(err)));
  }, [range]);

  return (
    <section aria-labelledby="metrics-title">
      <div className="screen-head">
        <h1 id="metrics-title">Metrics</h1>
        <div role="group" aria-label="Range">
          {(Object.keys(RANGES) as RangeKey[]).map((k) => (
            <button key={k} type="button" className="chip" aria-pressed={range === k} onClick={() => setRange(k)}>
              {k}
            </button>
          ))}
        </div>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {!summary ? <p>Loading…</p> : <MetricsBody summary={summary} />}
      <ScreeningMetrics />
    </section>
  );
}

function Tile({ label, value, sub }: { label: string; value: string; sub?: string }) {
  return (
    <div className="tile">
      <div className="tile-value">{value}</div>
      <div className="tile-label">{label}</div>
      {sub && <div className="tile-sub">{sub}</div>}
    </div>
  );
}

function MetricsBody({ summary }: { summary: MetricsSummary }) {
  const t = summary.totals;
  const labels = summary.series.map((s) => bucketLabel(s.start, summary.bucket));
  // biome-ignore lint/correctness/useExhaustiveDependencies: labels and everything else here derive from summary
  const configs = useMemo(() => ({
    rates: lineConfig(
      labels,
      [
        { label: 'automation rate', data: summary.series.map((s) => pct(s.automationRate)) },
        { label: 'human-review rate', data: summary.series.map((s) => pct(s.humanReviewRate)) },
        { label: 'escalation rate', data: summary.series.map((s) => pct(s.escalationRate)) },
        { label: 'approval rate', data: summary.series.map((s) => pct(s.approvalRate)) },
      ],
      '%',
      100,
    ),
    times: lineConfig(
      labels,
      [
        { label: 'median', data: summary.series.map((s) => s.medianDecisionSeconds) },
        { label: 'p90', data: summary.series.map((s) => s.p90DecisionSeconds) },
      ],
      'seconds to decision',
    ),
    sla: {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { label: 'met SLA', data: summary.series.map((s) => s.slaMet), backgroundColor: '#137a3a' },
          { label: 'missed SLA', data: summary.series.map((s) => s.slaMissed), backgroundColor: '#b3261e' },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: 'requests' } } },
        plugins: { legend: { position: 'bottom' } },
      },
    } satisfies ChartConfiguration,
    volume: {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { label: 'automatic', data: summary.series.map((s) => s.automated), backgroundColor: '#1f5fbf' },
          { label: 'to humans', data: summary.series.map((s) => s.humanRouted), backgroundColor: '#b35900' },
          { label: 'blocked', data: summary.series.map((s) => s.blocked), backgroundColor: '#555' },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: 'requests' } } },
        plugins: { legend: { position: 'bottom' } },
      },
    } satisfies ChartConfiguration,
  }), [summary]);
  const secs = (v: number | null) => (v === null ? '—' : duration(v));
  return (
    <>
      {summary.truncated && <p className="notice">Only the first 500,000 requests of this range were counted.</p>}
      <div className="tiles">
        <Tile label="automation rate" value={percent(t.automationRate)} sub={`${t.automated} of ${t.requests}`} />
        <Tile label="human-review rate" value={percent(t.humanReviewRate)} sub={`${t.humanRouted} of ${t.requests}`} />
        <Tile label="escalation rate" value={percent(t.escalationRate)} sub={`${t.escalated} of ${t.humanRouted}`} />
        <Tile label="approval rate" value={percent(t.approvalRate)} sub={`${t.humanApproved} of ${t.humanDecided} human decisions`} />
        <Tile label="median time to decision" value={secs(t.medianDecisionSeconds)} sub={`p90 ${secs(t.p90DecisionSeconds)}`} />
        <Tile label="SLA compliance" value={percent(t.slaCompliance)} sub={`${t.slaMet} met, ${t.slaMissed} missed`} />
      </div>
      <div className="charts">
        <figure>
          <figcaption>Rates over time</figcaption>
          <ChartCanvas config={configs.rates} label="Automation, human-review, escalation and approval rates over time; numbers in the table below" />
        </figure>
        <figure>
          <figcaption>Time to decision</figcaption>
          <ChartCanvas config={configs.times} label="Median and p90 time to decision over time; numbers in the table below" />
        </figure>
        <figure>
          <figcaption>SLA compliance</figcaption>
          <ChartCanvas config={configs.sla} label="Requests that met and missed their SLA over time; numbers in the table below" />
        </figure>
        <figure>
          <figcaption>Volume</figcaption>
          <ChartCanvas config={configs.volume} label="Requests by route over time; numbers in the table below" />
        </figure>
      </div>
      <details>
        <summary>The numbers behind the charts</summary>
        <SeriesTable summary={summary} labels={labels} />
      </details>
      <h2>Per operator</h2>
      {summary.operators.length === 0 ? (
        <p className="muted">No reviews in this range.</p>
      ) : (
        <table className="operators">
          <thead>
            <tr>
              <th scope="col">Operator</th>
              <th scope="col">Reviews</th>
              <th scope="col">Approvals</th>
              <th scope="col">Rejections</th>
              <th scope="col">Median response</th>
            </tr>
          </thead>
          <tbody>
            {summary.operators.map((o) => (
              <tr key={o.id}>
                <th scope="row">
                  <SafeText text={o.name} inline max={100} />
                </th>
                <td>{o.reviews}</td>
                <td>{o.approvals}</td>
                <td>{o.rejections}</td>
                <td>{secs(o.medianResponseSeconds)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

function SeriesTable({ summary, labels }: { summary: MetricsSummary; labels: string[] }) {
  const cols: Array<[string, (r: Rates) => string]> = [
    ['requests', (r) => String(r.requests)],
    ['automation', (r) => percent(r.automationRate)],
    ['human review', (r) => percent(r.humanReviewRate)],
    ['escalation', (r) => percent(r.escalationRate)],
    ['approval', (r) => percent(r.approvalRate)],
    ['median', (r) => (r.medianDecisionSeconds === null ? '—' : duration(r.medianDecisionSeconds))],
    ['p90', (r) => (r.p90DecisionSeconds === null ? '—' : duration(r.p90DecisionSeconds))],
    ['SLA', (r) => percent(r.slaCompliance)],
  ];
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">{summary.bucket}</th>
          {cols.map(([c]) => (
            <th scope="col" key={c}>
              {c}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>
        {summary.series.map((s, i) => (
          <tr key={s.start}>
            <th scope="row">{labels[i]}</th>
            {cols.map(([c, f]) => (
              <td key={c}>{f(s)}</td>
            ))}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
