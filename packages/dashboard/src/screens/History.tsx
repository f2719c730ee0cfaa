/** Decided requests, searchable, with one request's audit entries as a timeline. */
import type { ApprovalRequest, RequestStatus } from '@countersign/core';
import { useEffect, useMemo, useState } from 'react';
import { api, type AuditEntry } from '../api.ts';
import { RiskBadge, StatusBadge } from '../components/Badges.tsx';
import { explain } from '../components/Dialogs.tsx';
import { JsonTree } from '../components/JsonTree.tsx';
import { SafeText } from '../components/SafeText.tsx';
import { duration, when } from '../format.ts';
import { requestHref } from '../router.ts';
import { describeEntry } from '../why.ts';

const DECIDED: RequestStatus[] = ['approved', 'executing', 'rejected', 'expired', 'cancelled', 'executed', 'execution_failed', 'lapsed'];

function decider(r: ApprovalRequest): string {
  const d = r.decision;
  if (!d) return '—';
  if (d.decidedBy === 'reviewers') return d.deciders.map((x) => x.name).join(', ');
  return d.decidedBy;
}

function haystack(r: ApprovalRequest): string {
  return [r.id, r.action, r.agentName, r.status, decider(r), r.decision?.reason ?? '', r.description ?? '', JSON.stringify(r.args)].join('\n').toLowerCase();
}

export function HistoryScreen() {
  const [status, setStatus] = useState<string>('');
  const [query, setQuery] = useState('');
  const [items, setItems] = useState<ApprovalRequest[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<string | null>(null);
  const [open, setOpen] = useState<string | null>(null);

  const load = async (from: string | null, replace: boolean) => {
    setLoading(true);
    try {
      const page = await api.list({ status: status || undefined, limit: 100, cursor: from ?? undefined });
      const decided = page.items.filter((r) => r.status !== 'pending');
      setItems((old) => (replace ? decided : [...old, ...decided]));
      setCursor(page.nextCursor);
      setError(null);
    } catch (err) {
      setError(explain(err));
    } finally {
      setLoading(false);
    }
  };
  // biome-ignore lint/correctness/useExhaustiveDependencies: reloads from the start when the status filter changes; load is new on every render
  useEffect(() => {
    void load(null, true);
  }, [status]);

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return q ? items.filter((r) => haystack(r).includes(q)) : items;
  }, [items, query]);

  return (
    <section aria-labelledby="history-title">
      <h1 id="history-title">History</h1>
      <div className="filters">
        <label>
          Search{' '}
          <input type="search" value={query} placeholder="id, action, agent, decider, reason…" onChange={(e) => setQuery(e.target.value)} />
        </label>
        <label>
          Outcome{' '}
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">any decided</option>
            {DECIDED.map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
        <span className="muted">
          {shown.length} of {items.length} loaded
        </span>
      </div>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <table className="history-table">
        <thead>
          <tr>
            <th scope="col">Decided</th>
            <th scope="col">Action</th>
            <th scope="col">Agent</th>
            <th scope="col">Risk</th>
            <th scope="col">Outcome</th>
            <th scope="col">Decided by</th>
            <th scope="col">Review time</th>
            <th scope="col">Trail</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((r) => (
            <HistoryRow key={r.id} request={r} open={open === r.id} onToggle={() => setOpen(open === r.id ? null : r.id)} />
          ))}
        </tbody>
      </table>
      {loading && <p>Loading…</p>}
      {!loading && cursor && (
        <button type="button" onClick={() => void load(cursor, false)}>
          Load older
        </button>
      )}
      {!loading && items.length === 0 && <p className="empty">No decided requests yet.</p>}
    </section>
  );
}

function HistoryRow({ request: r, open, onToggle }: { request: ApprovalRequest; open: boolean; onToggle: () => void }) {
  const review = r.decision ? (Date.parse(r.decision.at) - Date.parse(r.createdAt)) / 1000 : null;
  return (
    <>
      <tr data-request-id={r.id}>
        <td>{when(r.decision?.at ?? r.updatedAt)}</td>
        <td>
          <a className="mono" href={requestHref(r.id)}>
            {r.action}
          </a>
        </td>
        <td>
          <SafeText text={r.agentName} inline max={60} />
        </td>
        <td>
          <RiskBadge level={r.assessment.riskLevel} />
        </td>
        <td>
          <StatusBadge status={r.status} />
        </td>
        <td>
          <SafeText text={decider(r)} inline max={80} />
        </td>
        <td>{review === null ? '—' : duration(review)}</td>
        <td>
          <button type="button" className="link-button" aria-expanded={open} onClick={onToggle}>
            {open ? 'hide' : 'timeline'}
          </button>
        </td>
      </tr>
      {open && (
        <tr className="timeline-row">
          <td colSpan={8}>
            <Timeline id={r.id} />
          </td>
        </tr>
      )}
    </>
  );
}

/**
 * One request's audit entries, in words: what happened, who did it, and what people or the
 * agent wrote (as SafeText). Ids and hashes stay out of the way; anything not put into words is
 * kept, folded, under "details".
 */
export function Timeline({ id }: { id: string }) {
  const [entries, setEntries] = useState<AuditEntry[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    api.audit(id).then(
      (r) => setEntries(r.items),
      (err: unknown) => setError(explain(err)),
    );
  }, [id]);
  if (error) return <p className="error">{error}</p>;
  if (!entries) return <p>Loading the audit trail…</p>;
  const now = Date.now();
  return (
    <ol className="timeline" aria-label={`audit trail of ${id}`}>
      {entries.map((e) => {
        const words = describeEntry(e, now);
        return (
          <li key={e.seq} data-type={e.type}>
            <span className="t-time">{when(e.at)}</span> <strong className="t-type">{words.summary}</strong>
            {words.showActor && (
              <>
                {' '}
                by {ACTOR_KIND[e.actor.type] ?? e.actor.type} <SafeText text={e.actor.name} inline max={80} />
              </>
            )}{' '}
            <span className="muted small">
              #{e.seq} · {e.type}
            </span>
            {words.notes.length > 0 && (
              <ul className="t-notes">
                {words.notes.map((n, i) => (
                  <li key={i}>
                    {n.label}: <SafeText text={n.text} inline max={300} />
                  </li>
                ))}
              </ul>
            )}
            {words.rest && (
              <details className="t-data">
                <summary>details</summary>
                <JsonTree value={words.rest} label={`entry ${e.seq} details`} />
              </details>
            )}
          </li>
        );
      })}
    </ol>
  );
}

const ACTOR_KIND: Record<string, string> = { operator: 'operator', agent: 'agent', system: 'Countersign' };
