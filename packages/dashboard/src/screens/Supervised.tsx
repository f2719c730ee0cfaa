/**
 * Requests that ran automatically at the `supervised` automation level, for post-hoc review.
 * A reviewer can flag one as "should have asked" (or confirm it was fine); either is recorded
 * as an audit entry through the engine.
 */
import type { ApprovalRequest } from '@countersign/core';
import { useEffect, useState } from 'react';
import { api, type AuditEntry } from '../api.ts';
import { RiskBadge, StatusBadge } from '../components/Badges.tsx';
import { explain } from '../components/Dialogs.tsx';
import { JsonTree } from '../components/JsonTree.tsx';
import { SafeText } from '../components/SafeText.tsx';
import { when } from '../format.ts';
import { requestHref } from '../router.ts';

type Verdict = 'should_have_asked' | 'ok';

async function loadFeedback(): Promise<Map<string, AuditEntry[]>> {
  const byRequest = new Map<string, AuditEntry[]>();
  let after: number | undefined;
  for (let i = 0; i < 20; i++) {
    const { items } = await api.auditByType('feedback', after);
    for (const e of items) if (e.requestId) byRequest.set(e.requestId, [...(byRequest.get(e.requestId) ?? []), e]);
    if (items.length < 1000) break;
    after = items[items.length - 1]!.seq;
  }
  return byRequest;
}

export function SupervisedScreen({ me }: { me: string }) {
  const [items, setItems] = useState<ApprovalRequest[] | null>(null);
  const [feedback, setFeedback] = useState<Map<string, AuditEntry[]>>(new Map());
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    Promise.all([api.list({ automationLevel: 'supervised', limit: 100 }), loadFeedback()]).then(
      ([page, fb]) => {
        setItems(page.items.filter((r) => r.assessment.route === 'auto_approve'));
        setFeedback(fb);
      },
      (err: unknown) => setError(explain(err)),
    );
  }, []);
  const recorded = (entry: AuditEntry) => {
    setFeedback((old) => new Map(old).set(entry.requestId!, [...(old.get(entry.requestId!) ?? []), entry]));
  };
  return (
    <section aria-labelledby="supervised-title">
      <h1 id="supervised-title">Supervised feed</h1>
      <p className="hint">
        These ran without a human because the policy put them at the <em>supervised</em> level. Flag the ones that should have asked: the flag is
        recorded in the audit trail and counted in <span className="mono">countersign_feedback_total</span>.
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {items === null ? (
        <p>Loading…</p>
      ) : items.length === 0 ? (
        <p className="empty">Nothing has run at the supervised level yet.</p>
      ) : (
        <ul className="feed">
          {items.map((r) => (
            <FeedItem key={r.id} request={r} entries={feedback.get(r.id) ?? []} me={me} onRecorded={recorded} />
          ))}
        </ul>
      )}
    </section>
  );
}

function FeedItem({ request: r, entries, me, onRecorded }: { request: ApprovalRequest; entries: AuditEntry[]; me: string; onRecorded: (e: AuditEntry) => void }) {
  const [note, setNote] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const mine = [...entries].reverse().find((e) => e.actor.name === me);
  const myVerdict = (mine?.data as { verdict?: Verdict } | undefined)?.verdict;
  const flags = entries.filter((e) => (e.data as { verdict?: string }).verdict === 'should_have_asked');
  const send = async (verdict: Verdict) => {
    setBusy(true);
    setError(null);
    try {
      onRecorded(await api.feedback(r.id, verdict, note.trim() || undefined));
    } catch (err) {
      setError(explain(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <li className="feed-item" data-request-id={r.id}>
      <div className="feed-head">
        <a className="mono" href={requestHref(r.id)}>
          {r.action}
        </a>{' '}
        by <SafeText text={r.agentName} inline max={60} /> <RiskBadge level={r.assessment.riskLevel} score={r.assessment.riskScore} /> <StatusBadge status={r.status} />{' '}
        <span className="muted">
          confidence {r.confidence?.toFixed(2) ?? '—'} · {when(r.createdAt)}
        </span>
      </div>
      <div className="agent-zone compact">
        <p className="zone-label">Agent-supplied</p>
        {r.description && <SafeText text={r.description} max={300} maxLines={4} />}
        <JsonTree value={r.args} label="arguments" />
      </div>
      <div className="feed-actions">
        {flags.length > 0 && (
          <span className="flagged">
            Flagged “should have asked” by {flags.map((f) => f.actor.name).join(', ')}
          </span>
        )}
        {myVerdict && <span className="muted"> · your verdict: {myVerdict === 'ok' ? 'looks right' : 'should have asked'}</span>}
        <label className="field inline">
          Note{' '}
          <input type="text" value={note} maxLength={2000} onChange={(e) => setNote(e.target.value)} />
        </label>
        <button type="button" className="danger" disabled={busy || myVerdict === 'should_have_asked'} onClick={() => void send('should_have_asked')}>
          Should have asked
        </button>
        <button type="button" disabled={busy || myVerdict === 'ok'} onClick={() => void send('ok')}>
          Looks right
        </button>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </div>
    </li>
  );
}
