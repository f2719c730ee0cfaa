/**
 * The queue: pending requests, most urgent first (risk level, then the SLA deadline, then oldest),
 * filtered, ordered, paged and counted by the server (`GET /v1/requests`), live over server-sent
 * events. The counts in the header come from the same query as the rows, and "N more" says what
 * is not loaded yet. Of the loaded rows, what the reviewer can act on now comes first; the rest is
 * listed below it, each with the reason.
 * Keys: j / k move, Enter opens, a approve (then y to confirm), r reject (reason required). A
 * shortcut's key is never typed into the field its dialog focuses (preventDefault).
 */
import type { RiskLevel } from '@countersign/core';
import { memo, useEffect, useMemo, useRef, useState } from 'react';
import { api, type ApprovalRequest, type Operator } from '../api.ts';
import { RiskBadge } from '../components/Badges.tsx';
import { ApproveDialog, RejectDialog, typing } from '../components/Dialogs.tsx';
import { NoDescription, SafeText } from '../components/SafeText.tsx';
import { duration, slaLeft } from '../format.ts';
import { type LiveQueue, PAGE, useLive, useNow } from '../live.ts';
import { dueAt, escalationOf, isFiltered, RISK_ORDER, type QueueQuery } from '../queue.ts';
import { navigate, requestHref } from '../router.ts';
import { cooldownSentence, whyNotActionable, type ViewerLimits } from '../why.ts';

type Dialog = { kind: 'approve' | 'reject'; request: ApprovalRequest } | null;

/**
 * The viewer's cool-down and velocity, re-read whenever the queue changes (at most every 5 s):
 * they are what most often makes a request not actionable, and the reason must be exact.
 */
export function useViewerLimits(operatorId: string, trigger: unknown): ViewerLimits {
  const [limits, setLimits] = useState<ViewerLimits>({ cooldown: null, velocity: null });
  const last = useRef(0);
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  // biome-ignore lint/correctness/useExhaustiveDependencies: trigger is a value that changes when the limits may have (the caller passes it); each change re-reads them (at most every 5 s)
  useEffect(() => {
    const timer = setTimeout(() => {
      last.current = Date.now();
      void Promise.all([api.cooldown(operatorId).catch(() => null), api.velocity(operatorId).catch(() => null)]).then(
        ([cooldown, velocity]) => mounted.current && setLimits({ cooldown, velocity }),
      );
    }, Math.max(0, last.current + 5000 - Date.now()));
    return () => clearTimeout(timer);
  }, [operatorId, trigger]);
  return limits;
}

export function QueueScreen({ live, viewer }: { live: LiveQueue; viewer: Operator }) {
  const meId = viewer.id;
  const { pending, status, arrived, loaded, query, counts, remaining, loadingMore, error } = useLive(live);
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [dialog, setDialog] = useState<Dialog>(null);
  const [notice, setNotice] = useState<string | null>(null);
  // The agent and action boxes are sent to the server once typing pauses (or on Enter).
  const [agentText, setAgentText] = useState(query.agent);
  const [actionText, setActionText] = useState(query.action);
  const setQuery = (next: QueueQuery) => live.setQuery(next);
  // biome-ignore lint/correctness/useExhaustiveDependencies: debounces the typed filters only; query and setQuery are new on every render
  useEffect(() => {
    if (agentText === query.agent && actionText === query.action) return;
    const timer = setTimeout(() => setQuery({ ...query, agent: agentText, action: actionText }), 400);
    return () => clearTimeout(timer);
  }, [agentText, actionText]);

  // In the server's order. First what this reviewer can act on now; `actionable` comes from the
  // server (role, stage, own request, earlier vote, cool-down, velocity, paused agent). The rest is
  // listed below, with the reason.
  const all = useMemo(() => [...pending.values()], [pending]);
  const shown = useMemo(() => all.filter((r) => r.actionable !== false), [all]);
  const others = useMemo(() => all.filter((r) => r.actionable === false), [all]);
  const limits = useViewerLimits(meId, pending);
  // Not useNow(): reasons name a minute, and the queue must not re-render every second (its cells tick on their own).
  const now = Date.now();
  const cooling = cooldownSentence(limits.cooldown, now);
  const agents = useMemo(() => [...new Set(all.map((r) => r.agentName))].sort().slice(0, 200), [all]);
  const actions = useMemo(() => [...new Set(all.map((r) => r.action))].sort().slice(0, 200), [all]);
  const selectedIndex = Math.max(0, shown.findIndex((r) => r.id === selectedId));
  const selected = shown[selectedIndex];

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (dialog || e.ctrlKey || e.metaKey || e.altKey || typing(e) || document.querySelector('dialog[open]')) return;
      const el = e.target as HTMLElement;
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
        e.preventDefault();
        setDialog({ kind: 'approve', request: selected });
      } else if (e.key === 'r' && selected) {
        // Without preventDefault the "r" would land in the reason field the dialog focuses.
        e.preventDefault();
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
    const risks = new Set(query.risks);
    if (risks.has(level)) risks.delete(level);
    else risks.add(level);
    setQuery({ ...query, risks, agent: agentText, action: actionText });
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
        Most urgent first (risk level, then SLA left, then oldest). Keys: <kbd>j</kbd>/<kbd>k</kbd> move, <kbd>Enter</kbd> open, <kbd>a</kbd> approve (then <kbd>y</kbd>),{' '}
        <kbd>r</kbd> reject, <kbd>?</kbd> all shortcuts.
      </p>
      {cooling && (
        <div className="notice warn" role="status" data-testid="cooldown-banner">
          <p>
            <strong>{cooling}.</strong>
          </p>
          <p>
            A cool-down starts when one reviewer approves many high-risk requests in a short time: it protects you and the organisation from approval fatigue
            and from an agent that floods you. Until it ends you can still reject, but another reviewer must approve{' '}
            {(limits.cooldown?.config?.riskLevels ?? ['high', 'critical']).join(' and ')}-risk requests; a request that was waiting for you moves up its
            escalation chain. You cannot lift your own cool-down: wait for it to end, or ask another reviewer to take these requests.
          </p>
        </div>
      )}
      <div className="filters" role="group" aria-label="Filters">
        <div className="risk-counts" role="group" aria-label="Risk levels">
          {RISK_ORDER.map((level) => (
            <button key={level} type="button" className={`chip risk-${level}`} aria-pressed={query.risks.has(level)} onClick={() => toggleRisk(level)}>
              {level} <span className="count">{counts[level]}</span>
            </button>
          ))}
        </div>
        <label>
          Agent{' '}
          <input
            type="search"
            list="queue-agents"
            placeholder="any (id or name)"
            value={agentText}
            maxLength={200}
            onChange={(e) => setAgentText(e.target.value)}
            onKeyDown={(e) => e.key === 'Enter' && setQuery({ ...query, agent: agentText, action: actionText })}
          />
          <datalist id="queue-agents">
            {agents.map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <label>
          Action{' '}
          <input
            type="search"
            list="queue-actions"
            placeholder="any"
            value={actionText}
            maxLength={128}
            onChange={(e) => setActionText(e.target.value)}
            onKeyDown={(e) => e.key === 'Enter' && setQuery({ ...query, agent: agentText, action: actionText })}
          />
          <datalist id="queue-actions">
            {actions.map((a) => (
              <option key={a} value={a} />
            ))}
          </datalist>
        </label>
        <button
          type="button"
          className="chip"
          aria-pressed={query.mine}
          data-testid="queue-mine"
          title="Ask the server for only the requests you may approve now, however many others come first"
          onClick={() => setQuery({ ...query, mine: !query.mine, agent: agentText, action: actionText })}
        >
          Only what I can approve
        </button>
        <span className="muted" data-testid="queue-total">
          {counts.total} pending{query.mine ? ' (all of them, yours or not)' : isFiltered(query) ? ' match these filters' : ''}
        </span>
      </div>
      {error && (
        <p className="notice warn" role="alert" data-testid="queue-error">
          The server refused this filter: <SafeText text={error} inline max={300} />
        </p>
      )}
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {!loaded ? (
        <p>Loading the queue…</p>
      ) : all.length === 0 && !isFiltered(query) && !error ? (
        <EmptyQueue />
      ) : (
        <>
          {shown.length === 0 ? (
            <p className="empty">
              {others.length > 0
                ? `Nothing here you can act on now: ${others.length === 1 ? 'the request below needs' : `the ${others.length} requests below need`} someone else, or must wait.`
                : query.mine
                  ? remaining > 0
                    ? 'Nothing you can approve among the requests read so far: load more to look further.'
                    : 'Nothing is waiting for your approval now.'
                  : 'No pending request matches these filters.'}
            </p>
          ) : (
            <QueueTable caption="Pending requests you can act on, most urgent first" requests={shown} selectedId={selected?.id} arrived={arrived} meId={meId} onSelect={setSelectedId} />
          )}
          {others.length > 0 && (
            <section className="not-actionable" aria-labelledby="others-title" data-testid="not-actionable">
              <h2 id="others-title">
                Requests I cannot act on <span className="count-plain">({others.length})</span>
              </h2>
              <QueueTable
                caption="Pending requests you cannot act on now, with the reason"
                requests={others}
                selectedId={undefined}
                arrived={arrived}
                meId={meId}
                onSelect={ignoreSelect}
                why={(r) => {
                  // The server's own reason when it gives one (whyNotActionable says it, in local time for a cool-down).
                  const why = whyNotActionable(r, viewer, limits, now);
                  return why.short ?? why.text;
                }}
              />
            </section>
          )}
          {remaining > 0 && (
            <p className="more" data-testid="queue-more">
              {query.mine ? `${remaining} more pending requests not looked at yet (yours or not).` : `${remaining} more not shown (showing ${all.length} of ${all.length + remaining}).`}{' '}
              <button type="button" disabled={loadingMore} onClick={() => void live.loadMore()}>
                {loadingMore ? 'Loading…' : query.mine ? 'Look further' : `Load ${Math.min(remaining, PAGE)} more`}
              </button>
            </p>
          )}
        </>
      )}
      {dialog?.kind === 'approve' && <ApproveDialog request={dialog.request} choice={{ kind: 'approve' }} onClose={() => setDialog(null)} onDecided={decided} />}
      {dialog?.kind === 'reject' && <RejectDialog request={dialog.request} onClose={() => setDialog(null)} onDecided={decided} />}
    </section>
  );
}

const ignoreSelect = () => undefined;

function QueueTable({
  caption,
  requests,
  selectedId,
  arrived,
  meId,
  onSelect,
  why,
}: {
  caption: string;
  requests: readonly ApprovalRequest[];
  selectedId: string | undefined;
  arrived: ReadonlySet<string>;
  meId: string;
  onSelect: (id: string) => void;
  why?: (r: ApprovalRequest) => string;
}) {
  return (
    <table className="queue-table">
      <caption className="sr-only">{caption}</caption>
      <thead>
        <tr>
          <th scope="col">Risk</th>
          <th scope="col">Action</th>
          <th scope="col">Agent</th>
          <th scope="col">Description (agent-supplied)</th>
          <th scope="col">Confidence</th>
          <th scope="col">SLA</th>
          <th scope="col">Age</th>
          {why && <th scope="col">Why you cannot act on it</th>}
        </tr>
      </thead>
      <tbody>
        {requests.map((r) => (
          <QueueRow key={r.id} request={r} selected={r.id === selectedId} arrived={arrived.has(r.id)} meId={meId} onSelect={onSelect} why={why?.(r)} />
        ))}
      </tbody>
    </table>
  );
}

/**
 * The empty queue tells a newcomer how to fill it: a request any agent key can send, to this
 * very server (the page's own origin), copyable.
 */
function EmptyQueue() {
  const command = firstRequestCommand(window.location.origin);
  const [copied, setCopied] = useState<'yes' | 'select' | null>(null);
  return (
    <div className="empty" data-testid="empty-queue">
      <p>Nothing is waiting for a decision.</p>
      <p>To see a request arrive, send one as an agent (with the agent key printed on the server's first start, or one from <span className="mono">countersign keys create</span>):</p>
      <pre className="command mono" data-testid="first-request" tabIndex={0} aria-label="A first request, as a curl command">
        {command}
      </pre>
      <button
        type="button"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(command);
            setCopied('yes');
          } catch {
            // No clipboard (a plain-http origin other than localhost): select the text instead.
            const pre = document.querySelector('[data-testid="first-request"]');
            if (pre) window.getSelection()?.selectAllChildren(pre);
            setCopied('select');
          }
        }}
      >
        Copy the command
      </button>
      <span role="status" className="muted">
        {copied === 'yes' ? ' Copied.' : copied === 'select' ? ' Selected: press Ctrl+C (⌘C) to copy.' : ''}
      </span>
    </div>
  );
}

/** A first request that goes to human review (isolating a host is high risk), for `origin`. */
export function firstRequestCommand(origin: string): string {
  const body = JSON.stringify({ action: 'isolate_host', args: { host: 'ws-042' }, confidence: 0.82, description: 'EDR saw beaconing to 198.51.100.9' });
  return `curl -s ${origin}/v1/requests \
  -H "Authorization: Bearer $COUNTERSIGN_AGENT_KEY" \
  -H 'content-type: application/json' \
  -d '${body}'`;
}

/** One row; re-renders only when its request or selection changes (the clock ticks in its cells). */
const QueueRow = memo(function QueueRow({
  request: r,
  selected,
  arrived,
  meId,
  onSelect,
  why,
}: {
  request: ApprovalRequest;
  selected: boolean;
  arrived: boolean;
  meId: string;
  onSelect: (id: string) => void;
  why?: string | undefined;
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
      <td className="desc">{r.description ? <SafeText text={r.description} inline max={90} /> : <NoDescription />}</td>
      <td>
        {r.confidence === null ? '—' : r.confidence.toFixed(2)}
        {r.reviews.some((v) => v.reviewer.id === meId) && <span className="voted"> · you voted</span>}
      </td>
      <SlaCell request={r} />
      <AgeCell createdAt={r.createdAt} />
      {why !== undefined && (
        <td className="why">
          {/* the reason can quote an approver group the agent asked for */}
          <SafeText text={why} inline max={400} />
        </td>
      )}
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
