/**
 * The queue: pending requests, most urgent first, live over server-sent events.
 * Keys: j / k move, Enter opens, a approve (then y to confirm), r reject (reason required).
 */
import type { RiskLevel } from '@countersign/core';
import { memo, useEffect, useMemo, useState } from 'react';
import type { ApprovalRequest } from '../api.ts';
import { RiskBadge } from '../components/Badges.tsx';
import { ApproveDialog, RejectDialog } from '../components/Dialogs.tsx';
import { SafeText } from '../components/SafeText.tsx';
import { duration, slaLeft } from '../format.ts';
import { type LiveQueue, useLive, useNow } from '../live.ts';
import { byUrgency, countByRisk, dueAt, escalationOf, matches, NO_FILTER, RISK_ORDER, type QueueFilter } from '../queue.ts';
import { navigate, requestHref } from '../router.ts';

type Dialog = { kind: 'approve' | 'reject'; request: ApprovalRequest } | null;

export function QueueScreen({ live, meId }: { live: LiveQueue; meId: string }) {
  const { pending, status, arrived, loaded } = useLive(live);
  const [filter, setFilter] = useState<QueueFilter>(NO_FILTER);
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [dialog, setDialog] = useState<Dialog>(null);
  const [notice, setNotice] = useState<string | null>(null);

  const all = useMemo(() => [...pending.values()].sort(byUrgency), [pending]);
  // By default the queue holds what this reviewer can act on now; `actionable` comes from the
  // server (role, stage, own request, earlier vote). Live arrivals carry none until reloaded.
  const [showAll, setShowAll] = useState(false);
  const notMine = useMemo(() => all.filter((r) => r.actionable === false).length, [all]);
  const shown = useMemo(() => all.filter((r) => (showAll || r.actionable !== false) && matches(r, filter)), [all, filter, showAll]);
  const counts = useMemo(() => countByRisk(all), [all]);
  const agents = useMemo(() => [...new Set(all.map((r) => r.agentName))].sort(), [all]);
  const actions = useMemo(() => [...new Set(all.map((r) => r.action))].sort(), [all]);
  const levels = useMemo(() => [...new Set(all.map((r) => escalationOf(r)?.level ?? 0))].sort((a, b) => a - b), [all]);
  const selectedIndex = Math.max(0, shown.findIndex((r) => r.id === selectedId));
  const selected = shown[selectedIndex];

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (dialog || e.ctrlKey || e.metaKey || e.altKey) return;
      const el = e.target as HTMLElement;
      if (el.tagName === 'INPUT' || el.tagName === 'SELECT' || el.tagName === 'TEXTAREA') return;
      if (e.key === 'j' || e.key === 'ArrowDown') {
        const next = shown[Math.min(shown.length - 1, selectedIndex + 1)];
        if (next) setSelectedId(next.id);
        e.preventDefault();
      } else if (e.key === 'k' || e.key === 'ArrowUp') {
        const prev = shown[Math.max(0, selectedIndex - 1)];
        if (prev) setSelectedId(prev.id);
        e.preventDefault();
      } else if (e.key === 'Enter' && selected && el.tagName !== 'BUTTON' && el.tagName !== 'A') {
        navigate(requestHref(selected.id));
      } else if (e.key === 'a' && selected) {
        setDialog({ kind: 'approve', request: selected });
      } else if (e.key === 'r' && selected) {
        setDialog({ kind: 'reject', request: selected });
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [dialog, shown, selectedIndex, selected]);

  useEffect(() => {
    document.querySelector(`[data-request-id="${selected?.id}"]`)?.scrollIntoView({ block: 'nearest' });
  }, [selected?.id]);

  const toggleRisk = (level: RiskLevel) => {
    const risks = new Set(filter.risks);
    if (risks.has(level)) risks.delete(level);
    else risks.add(level);
    setFilter({ ...filter, risks });
  };
  const decided = (r: ApprovalRequest) => {
    setDialog(null);
    setNotice(`${r.action} ${r.status === 'pending' ? 'recorded your vote; more approvals are needed' : r.status}.`);
  };

  return (
    <section aria-labelledby="queue-title">
      <div className="screen-head">
        <h1 id="queue-title">Queue</h1>
        <span className={`live live-${status}`} role="status">
          {status === 'live' ? '● live' : status === 'connecting' ? 'connecting…' : 'reconnecting…'}
        </span>
      </div>
      <p className="hint">
        Most urgent first (SLA left, then risk). Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> open, <kbd>a</kbd> approve (then <kbd>y</kbd>),{' '}
        <kbd>r</kbd> reject.
      </p>
      <div className="filters" role="group" aria-label="Filters">
        <div className="risk-counts" role="group" aria-label="Risk levels">
          {RISK_ORDER.map((level) => (
            <button key={level} type="button" className={`chip risk-${level}`} aria-pressed={filter.risks.has(level)} onClick={() => toggleRisk(level)}>
              {level} <span className="count">{counts[level]}</span>
            </button>
          ))}
        </div>
        <label>
          Agent{' '}
          <select value={filter.agent} onChange={(e) => setFilter({ ...filter, agent: e.target.value })}>
            <option value="">any</option>
            {agents.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          Action{' '}
          <select value={filter.action} onChange={(e) => setFilter({ ...filter, action: e.target.value })}>
            <option value="">any</option>
            {actions.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <label>
          Escalation{' '}
          <select value={filter.escalation} onChange={(e) => setFilter({ ...filter, escalation: e.target.value })}>
            <option value="">any</option>
            {levels.map((l) => (
              <option key={l} value={String(l)}>
                level {l}
              </option>
            ))}
          </select>
        </label>
        <label>
          <input type="checkbox" checked={showAll} onChange={(e) => setShowAll(e.target.checked)} /> show requests I cannot act on ({notMine})
        </label>
      </div>
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {!loaded ? (
        <p>Loading the queue…</p>
      ) : shown.length === 0 ? (
        <p className="empty">{all.length === 0 ? 'Nothing is waiting for a decision.' : 'No pending request matches these filters.'}</p>
      ) : (
        <table className="queue-table">
          <caption className="sr-only">Pending requests, most urgent first</caption>
          <thead>
            <tr>
              <th scope="col">Risk</th>
              <th scope="col">Action</th>
              <th scope="col">Agent</th>
              <th scope="col">Description (agent-supplied)</th>
              <th scope="col">Confidence</th>
              <th scope="col">SLA</th>
              <th scope="col">Age</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((r) => (
              <QueueRow key={r.id} request={r} selected={r.id === selected?.id} arrived={arrived.has(r.id)} meId={meId} onSelect={setSelectedId} />
            ))}
          </tbody>
        </table>
      )}
      {dialog?.kind === 'approve' && <ApproveDialog request={dialog.request} choice={{ kind: 'approve' }} onClose={() => setDialog(null)} onDecided={decided} />}
      {dialog?.kind === 'reject' && <RejectDialog request={dialog.request} onClose={() => setDialog(null)} onDecided={decided} />}
    </section>
  );
}

/** One row; re-renders only when its request or selection changes (the clock ticks in its cells). */
const QueueRow = memo(function QueueRow({
  request: r,
  selected,
  arrived,
  meId,
  onSelect,
}: {
  request: ApprovalRequest;
  selected: boolean;
  arrived: boolean;
  meId: string;
  onSelect: (id: string) => void;
}) {
  return (
    <tr
      data-request-id={r.id}
      className={[selected ? 'selected' : '', arrived ? 'arrived' : ''].join(' ')}
      aria-current={selected ? true : undefined}
      onClick={() => onSelect(r.id)}
    >
      <td>
        <RiskBadge level={r.assessment.riskLevel} score={r.assessment.riskScore} />
      </td>
      <td>
        <a href={requestHref(r.id)} className="mono">
          {r.action}
        </a>
      </td>
      <td>
        <SafeText text={r.agentName} inline max={60} />
      </td>
      <td className="desc">{r.description ? <SafeText text={r.description} inline max={90} /> : <span className="muted">none</span>}</td>
      <td>
        {r.confidence === null ? '—' : r.confidence.toFixed(2)}
        {r.reviews.some((v) => v.reviewer.id === meId) && <span className="voted"> · you voted</span>}
      </td>
      <SlaCell request={r} />
      <AgeCell createdAt={r.createdAt} />
    </tr>
  );
});

function SlaCell({ request }: { request: ApprovalRequest }) {
  const sla = slaLeft(dueAt(request), useNow());
  const esc = escalationOf(request);
  return (
    <td className={sla.overdue ? 'overdue' : sla.soon ? 'soon' : ''}>
      {sla.text}
      {esc && esc.level > 0 && <span className="esc"> · level {esc.level}</span>}
    </td>
  );
}

function AgeCell({ createdAt }: { createdAt: string }) {
  return <td>{duration((useNow() - Date.parse(createdAt)) / 1000)}</td>;
}
