/**
 * GET /metrics: the exposition must parse under a strict reading of the Prometheus text format
 * (0.0.4), and the counters must move as requests are proposed and decided.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { labelValue, recordDelivery, recordEscalation } from '../src/http/metrics.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

// ---- a strict parser of the text exposition format ----

type Sample = { name: string; labels: Record<string, string>; value: number };
type Family = { name: string; type: string; help: string; samples: Sample[] };

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/** As Prometheus reads values (Go's ParseFloat): Inf and NaN in any case; prom-client writes `Nan`. */
function parseValue(text: string, line: number): number {
  if (/^\+?inf(inity)?$/i.test(text)) return Infinity;
  if (/^-inf(inity)?$/i.test(text)) return -Infinity;
  if (/^nan$/i.test(text)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) throw new Error(`line ${line}: bad value "${text}"`);
  return Number(text);
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`line ${line}: label without "="`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name)) throw new Error(`line ${line}: bad label name "${name}"`);
    if (name in labels) throw new Error(`line ${line}: duplicate label ${name}`);
    if (text[eq + 1] !== '"') throw new Error(`line ${line}: label value not quoted`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      const ch = text[j];
      if (ch === undefined) throw new Error(`line ${line}: unterminated label value`);
      if (ch === '"') break;
      if (ch === '\\') {
        const next = text[j + 1];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new Error(`line ${line}: bad escape \\${next}`);
        j += 2;
        continue;
      }
      if (ch === '\n') throw new Error(`line ${line}: raw newline in label value`);
      value += ch;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (i < text.length) {
      if (text[i] !== ',') throw new Error(`line ${line}: expected "," between labels`);
      i++;
    }
  }
  return labels;
}

/** Families by name. Throws on anything the format does not allow. */
function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  let current: Family | undefined;
  const familyOf = (sample: string): Family | undefined => {
    for (const suffix of ['', '_bucket', '_sum', '_count', '_total']) {
      if (suffix && !sample.endsWith(suffix)) continue;
      const base = suffix ? sample.slice(0, -suffix.length) : sample;
      const f = families.get(base);
      if (f && (suffix === '' || f.type === 'histogram' || f.type === 'summary' || (suffix === '_total' && f.type === 'counter'))) return f;
    }
    return undefined;
  };
  text.split('\n').slice(0, -1).forEach((raw, index) => {
    const line = index + 1;
    if (raw.trim() === '') return;
    if (raw.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(raw);
      if (!m) return; // plain comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`line ${line}: bad metric name ${name}`);
      let f = families.get(name);
      if (!f) {
        if (closed.has(name)) throw new Error(`line ${line}: family ${name} reopened`);
        if (current) closed.add(current.name);
        f = { name, type: 'untyped', help: '', samples: [] };
        families.set(name, f);
        current = f;
      } else if (f !== current) {
        throw new Error(`line ${line}: ${kind} for ${name} outside its family`);
      }
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) throw new Error(`line ${line}: unknown type ${rest}`);
        if (f.samples.length > 0) throw new Error(`line ${line}: TYPE after samples`);
        f.type = rest;
      } else {
        f.help = rest;
      }
      return;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: (-?\d+))?$/.exec(raw);
    if (!m) throw new Error(`line ${line}: not a sample: ${raw}`);
    const [, name, labelText, valueText] = m as unknown as [string, string, string | undefined, string];
    const f = familyOf(name);
    if (!f) throw new Error(`line ${line}: sample ${name} without a TYPE`);
    if (f !== current) throw new Error(`line ${line}: sample ${name} is not contiguous with its family`);
    f.samples.push({ name, labels: labelText ? parseLabels(labelText, line) : {}, value: parseValue(valueText, line) });
  });
  for (const f of families.values()) checkFamily(f);
  return families;
}

function checkFamily(f: Family): void {
  if (f.type === 'counter') {
    for (const s of f.samples) if (!(s.value >= 0)) throw new Error(`${s.name}: a counter is never negative`);
  }
  if (f.type !== 'histogram') return;
  const series = new Map<string, Sample[]>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(rest);
    if (!series.has(key)) series.set(key, []);
    series.get(key)!.push(s);
  }
  for (const [key, samples] of series) {
    const buckets = samples.filter((s) => s.name === `${f.name}_bucket`);
    const count = samples.find((s) => s.name === `${f.name}_count`);
    const sum = samples.find((s) => s.name === `${f.name}_sum`);
    if (!count || !sum || buckets.length === 0) throw new Error(`${f.name}${key}: needs buckets, _sum and _count`);
    let lastLe = -Infinity;
    let lastValue = 0;
    for (const b of buckets) {
      const le = parseValue(b.labels['le'] ?? 'x', 0);
      if (!(le > lastLe) || b.value < lastValue) throw new Error(`${f.name}${key}: buckets must be cumulative and ordered`);
      lastLe = le;
      lastValue = b.value;
    }
    if (lastLe !== Infinity || lastValue !== count.value) throw new Error(`${f.name}${key}: the +Inf bucket must equal _count`);
  }
}

// ---- the test ----

let database: TestDatabase;
let t: TestEngine;
let app: ReturnType<typeof createApp>;
let agentKey: string;
let reviewerToken: string;

/** High risk gets a one-second SLA, so a late decision is quick to produce. */
const POLICY = `levels:\n  high: { sla: 1s }\n`;

beforeAll(async () => {
  database = sqliteDatabase();
  const { DEFAULT_POLICY_YAML } = await import('@countersign/core');
  t = await openTestEngine(database.url, DEFAULT_POLICY_YAML);
  await t.engine.activatePolicy(POLICY, 'metrics-test');
  app = createApp({ engine: t.engine, log: () => {} });
  agentKey = (await t.engine.createAgentKey(t.admin, 'metrics-bot')).key;
  reviewerToken = (await t.engine.createOperator(t.admin, { name: 'metrics-reviewer', roles: ['reviewer'] })).token;
});
afterAll(async () => {
  await t.engine.close();
  await database.drop();
});

async function scrape(): Promise<Map<string, Family>> {
  const res = await app.request('/metrics');
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

function value(families: Map<string, Family>, family: string, sample: string, labels: Record<string, string>): number {
  const f = families.get(family);
  if (!f) throw new Error(`no family ${family}`);
  const found = f.samples.find((s) => s.name === sample && Object.entries(labels).every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === Object.keys(labels).length);
  return found?.value ?? 0;
}

async function post(path: string, token: string, body: unknown) {
  const res = await app.request(path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return (await res.json()) as { id: string; status: string; assessment: { riskLevel: string; automationLevel: string } };
}

describe('GET /metrics', () => {
  it('the strict parser refuses what the format forbids', () => {
    expect(() => parseExposition('# TYPE a counter\na 1\n')).not.toThrow();
    expect(() => parseExposition('a 1\n')).toThrow(/without a TYPE/);
    expect(() => parseExposition('# TYPE a counter\na{x="1} 1\n')).toThrow();
    expect(() => parseExposition('# TYPE a counter\na one\n')).toThrow(/bad value/);
    expect(() => parseExposition('# TYPE a counter\na -1\n')).toThrow(/negative/);
    expect(() => parseExposition('# TYPE a counter\na 1')).toThrow(/newline/);
    expect(() => parseExposition('# TYPE a counter\n# TYPE b gauge\nb 1\na 1\n')).toThrow(/contiguous/);
    expect(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n')).toThrow(/cumulative/);
    expect(() => parseExposition('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 2\n')).toThrow(/\+Inf/);
  });

  it('parses strictly and moves as requests are proposed and decided', async () => {
    const before = await scrape();
    for (const name of [
      'countersign_decisions_total',
      'countersign_requests_pending',
      'countersign_time_to_decision_seconds',
      'countersign_sla_breaches_total',
      'countersign_escalations_total',
      'countersign_notification_deliveries_total',
    ]) {
      expect(before.has(name), name).toBe(true);
    }
    expect(before.get('countersign_time_to_decision_seconds')!.type).toBe('histogram');
    expect(before.get('countersign_requests_pending')!.type).toBe('gauge');
    const pendingHigh = (f: Map<string, Family>) => value(f, 'countersign_requests_pending', 'countersign_requests_pending', { risk_level: 'high' });
    const decided = (f: Map<string, Family>, labels: Record<string, string>) => value(f, 'countersign_decisions_total', 'countersign_decisions_total', labels);

    // a policy decision
    const auto = await post('/v1/requests', agentKey, AUTO);
    expect(auto.status).toBe('approved');
    // two for humans: one approved in time, one rejected after its one-second SLA
    const quick = await post('/v1/requests', agentKey, QUEUED);
    const slow = await post('/v1/requests', agentKey, { ...QUEUED, args: { host: 'ws-077' } });
    expect(quick.assessment.riskLevel).toBe('high');
    const mid = await scrape();
    expect(pendingHigh(mid) - pendingHigh(before)).toBe(2);

    await post(`/v1/requests/${quick.id}/reviews`, reviewerToken, { verdict: 'approve' });
    await new Promise((r) => setTimeout(r, 1100));
    await post(`/v1/requests/${slow.id}/reviews`, reviewerToken, { verdict: 'reject', reason: 'wrong host' });
    recordEscalation('sla_timeout');
    recordDelivery('slack', 'delivered');
    recordDelivery('email', 'failed');

    const after = await scrape();
    const level = quick.assessment.automationLevel;
    expect(decided(after, { automation_level: auto.assessment.automationLevel, outcome: 'approved', decided_by: 'policy' }) - decided(before, { automation_level: auto.assessment.automationLevel, outcome: 'approved', decided_by: 'policy' })).toBe(1);
    expect(decided(after, { automation_level: level, outcome: 'approved', decided_by: 'reviewers' }) - decided(before, { automation_level: level, outcome: 'approved', decided_by: 'reviewers' })).toBe(1);
    expect(decided(after, { automation_level: level, outcome: 'rejected', decided_by: 'reviewers' }) - decided(before, { automation_level: level, outcome: 'rejected', decided_by: 'reviewers' })).toBe(1);
    expect(pendingHigh(after)).toBe(pendingHigh(before));

    const count = (f: Map<string, Family>, outcome: string) => value(f, 'countersign_time_to_decision_seconds', 'countersign_time_to_decision_seconds_count', { risk_level: 'high', outcome });
    expect(count(after, 'approved') - count(before, 'approved')).toBe(1);
    expect(count(after, 'rejected') - count(before, 'rejected')).toBe(1);
    const slowBucket = (f: Map<string, Family>) => value(f, 'countersign_time_to_decision_seconds', 'countersign_time_to_decision_seconds_bucket', { risk_level: 'high', outcome: 'rejected', le: '5' });
    expect(slowBucket(after) - slowBucket(before)).toBe(1);
    const sum = value(after, 'countersign_time_to_decision_seconds', 'countersign_time_to_decision_seconds_sum', { risk_level: 'high', outcome: 'rejected' });
    expect(sum).toBeGreaterThanOrEqual(1);

    const breaches = (f: Map<string, Family>) => value(f, 'countersign_sla_breaches_total', 'countersign_sla_breaches_total', { risk_level: 'high' });
    expect(breaches(after) - breaches(before)).toBe(1);
    expect(value(after, 'countersign_escalations_total', 'countersign_escalations_total', { reason: 'sla_timeout' })).toBe(1);
    expect(value(after, 'countersign_notification_deliveries_total', 'countersign_notification_deliveries_total', { channel: 'slack', result: 'delivered' })).toBe(1);
    expect(value(after, 'countersign_notification_deliveries_total', 'countersign_notification_deliveries_total', { channel: 'email', result: 'failed' })).toBe(1);

    // The seeds' gauges over the last 24h agree with the metrics summary of the same period (one definition, core's).
    const rate = (name: string) => value(after, 'countersign_review_rate', 'countersign_review_rate', { rate: name, window: '24h' });
    const seconds = (q: string) => value(after, 'countersign_review_seconds', 'countersign_review_seconds', { quantile: q, window: '24h' });
    const now = Date.now();
    const res = await app.request(`/v1/metrics/summary?from=${new Date(now - 24 * 3600_000).toISOString()}&to=${new Date(now + 60_000).toISOString()}`, { headers: { authorization: `Bearer ${reviewerToken}` } });
    expect(res.status).toBe(200);
    const totals = ((await res.json()) as { totals: Record<string, number | null> }).totals;
    expect(rate('approval')).toBe(0.5); // one approved, one rejected, both by reviewers
    expect(rate('approval')).toBe(totals.approvalRate);
    expect(rate('automation')).toBeCloseTo(totals.automationRate!, 12);
    expect(rate('human_review')).toBeCloseTo(totals.humanReviewRate!, 12);
    expect(rate('sla_compliance')).toBe(totals.slaCompliance ?? -1);
    expect(seconds('0.5')).toBe(totals.medianDecisionSeconds ?? -1);
    expect(seconds('0.9')).toBeGreaterThanOrEqual(seconds('0.5'));
  });

  it('keeps hook labels bounded and printable', () => {
    expect(labelValue('Slack')).toBe('slack');
    expect(labelValue('a"b\nc{d}')).toBe('a_b_c_d_');
    expect(labelValue('')).toBe('unknown');
    expect(labelValue('x'.repeat(500))).toHaveLength(64);
  });
});
