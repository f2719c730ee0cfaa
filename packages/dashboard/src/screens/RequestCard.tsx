/**
 * The decision screen. Two zones that never mix: what Countersign computed (risk, factors,
 * rules, route, SLA) and what the agent claims (description, args, evidence, context). Agent
 * text is only ever rendered through SafeText / JsonTree.
 * Keys: a approve (then y), r reject, m modify, Esc back to where the card was opened from. Each
 * shortcut calls preventDefault, so its key is never typed into the field it opens.
 */
import type { ApprovalRequest, Decision } from '@countersign/core';
import { useCallback, useEffect, useMemo, useState } from 'react';
import { api, ApiError } from '../api.ts';
import { techniqueName, techniqueReference } from '@countersign/core/attack';
import { RiskBadge, StatusBadge } from '../components/Badges.tsx';
import { ApproveDialog, EscalateDialog, explain, RejectDialog, typing, type Choice } from '../components/Dialogs.tsx';
import { JsonTree } from '../components/JsonTree.tsx';
import { NoDescription, SafeText } from '../components/SafeText.tsx';
import { checkArgs, diffJson, type Change } from '../diff.ts';
import { duration, score, slaLeft, when } from '../format.ts';
import { type LiveQueue, useNow } from '../live.ts';
import { dueAt, escalationOf, needsConfirmation, type EscalationInfo } from '../queue.ts';
import type { Operator } from '../api.ts';
import { navigate, ORIGIN_HREF, ORIGIN_LABEL, requestHref, type Origin } from '../router.ts';
import { useViewerLimits } from './Queue.tsx';
import { ScreeningSection } from './Screening.tsx';
import { outcomesText, pastOutcomes, whyNotActionable } from '../why.ts';
import { valueLines } from '../value.ts';

/** The action of an aggregate review (core's AGGREGATE_ACTION; only the server makes them). */
const AGGREGATE_ACTION = 'countersign.aggregate';

const KNOWN_CONTEXT = new Set(['target', 'evidence', 'blastRadius', 'attack', 'relatedIncidents', 'value', 'reversible', 'timeSensitivity', 'threatScore']);

export function RequestCard({ id, choose, from, live, viewer }: { id: string; choose: string | null; from: Origin; live: LiveQueue; viewer: Operator }) {
  const me = viewer.name;
  const back = ORIGIN_HREF[from];
  const [request, setRequest] = useState<ApprovalRequest | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [dialog, setDialog] = useState<Choice | null>(null);
  const [modifying, setModifying] = useState(false);
  const [changedElsewhere, setChangedElsewhere] = useState(false);
  const [actionError, setActionError] = useState<string | null>(null);
  /** The escalation level shown when Escalate… was clicked (sent as fromLevel), while its dialog is open. */
  const [escalating, setEscalating] = useState<number | null>(null);

  useEffect(() => {
    let cancelled = false;
    setRequest(null);
    setError(null);
    api.request(id).then(
      (r) => !cancelled && setRequest(r),
      (err: unknown) => !cancelled && setError(err instanceof ApiError && err.code === 'NOT_FOUND' ? 'No such request.' : (err as Error).message),
    );
    const unwatch = live.watch(id, (r) => {
      setRequest((old) => {
        if (old && old.updatedAt > r.updatedAt) return old;
        if (old && old.status === 'pending' && r.status !== 'pending') setChangedElsewhere(true);
        return r;
      });
    });
    return () => {
      cancelled = true;
      unwatch();
    };
  }, [id, live]);

  // A notification link preselects a choice; deciding still needs the confirmation.
  // biome-ignore lint/correctness/useExhaustiveDependencies: only once per arrival of a request (its id), not on every refresh of it
  useEffect(() => {
    if (!request || request.status !== 'pending' || !choose) return;
    const approvable = request.actionable !== false && !request.aggregate && !request.agentPaused;
    if (choose === 'approve') {
      if (approvable) setDialog({ kind: 'approve' });
    } else if (choose === 'reject') setDialog({ kind: 'reject' });
    else if (approvable && choose.startsWith('alternative:') && request.alternatives.some((a) => a.name === choose.slice(12) && !a.blocked)) setDialog({ kind: 'approve', alternative: choose.slice(12) });
  }, [request?.id, choose]);

  const pending = request?.status === 'pending';
  // Approve only where it can succeed: the server says whether this reviewer may act now (stage,
  // own request, earlier vote, cool-down); a request in an aggregate review is approved only
  // through it, and a paused agent's requests wait. Reject stays available.
  const canApprove = pending && request?.actionable !== false && !request?.aggregate && !request?.agentPaused;
  const canModify = canApprove && request?.action !== AGGREGATE_ACTION;
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (dialog || escalating !== null || e.ctrlKey || e.metaKey || e.altKey || typing(e) || document.querySelector('dialog[open]')) return;
      if (e.key === 'Escape') navigate(back);
      if (!pending) return;
      const open = e.key === 'a' && canApprove ? () => setDialog({ kind: 'approve' }) : e.key === 'r' ? () => setDialog({ kind: 'reject' }) : e.key === 'm' && canModify ? () => setModifying(true) : null;
      if (!open) return;
      // The key opens a dialog or an editor that takes focus; it must not also be typed into it.
      e.preventDefault();
      open();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [dialog, escalating, pending, canApprove, canModify, back]);
  const limits = useViewerLimits(viewer.id, request?.actionable === false ? request.updatedAt : null);
  // Not useNow(): the reason names a minute, and the whole card must not re-render every second.
  const now = Date.now();

  const onDecided = useCallback((r: ApprovalRequest) => {
    setDialog(null);
    setEscalating(null);
    setModifying(false);
    setChangedElsewhere(false);
    setRequest(r);
  }, []);

  if (error) return <p className="error" role="alert">{error}</p>;
  if (!request) return <p>Loading…</p>;
  // Escalate now (POST …/escalate): offered while a higher level exists; the server decides who may.
  const esc = escalationOf(request);
  const canEscalate = pending && esc !== null && esc.level > 0 && esc.level < (esc.levels ?? 0) && !request.aggregate;

  const approveClicked = async (choice: Extract<Choice, { kind: 'approve' }>) => {
    // High and critical: always a confirmation. Low and medium: the click is the decision.
    if (needsConfirmation(request)) return setDialog(choice);
    setActionError(null);
    try {
      onDecided(
        await api.review(request.id, {
          verdict: 'approve',
          ...(choice.alternative ? { alternative: choice.alternative } : {}),
          ...(request.payload ? { seenPayloadHash: request.payload.payloadHash } : {}),
        }),
      );
    } catch (err) {
      setActionError(explain(err));
    }
  };

  return (
    <article className="card" aria-labelledby="card-title">
      <header className="card-head">
        <p className="crumbs">
          <BackLink from={from} /> · <span className="mono muted">{request.id}</span>
        </p>
        <h1 id="card-title">
          <span className="mono">{request.action}</span>{' '}
          <span className="by">
            requested by <SafeText text={request.agentName} inline max={100} />
          </span>
        </h1>
        <div className="head-facts">
          <StatusBadge status={request.status} />
          <RiskBadge level={request.assessment.riskLevel} score={request.assessment.riskScore} />
          {pending && <SlaCountdown request={request} />}
          <span className="muted">proposed {when(request.createdAt)}</span>
        </div>
      </header>

      {changedElsewhere && (
        <p className="notice" role="status">
          This request was decided while you were looking at it; the page shows the decision.
        </p>
      )}

      <div className="zones">
        <Assessment request={request} />
        <Claims request={request} />
      </div>
      <ScreeningSection request={request} />

      <section className="decide" aria-labelledby="decide-title">
        <h2 id="decide-title">{pending ? 'Decide' : 'Decision'}</h2>
        {pending ? (
          <>
            <Progress request={request} />
            {request.aggregate && <AggregateNotice aggregate={request.aggregate} />}
            {request.actionable === false && !request.aggregate && !request.agentPaused && (
              <p className="notice warn" role="note" data-testid="not-actionable-notice">
                You cannot approve this now. <SafeText text={whyNotActionable(request, viewer, limits, now).text} inline max={600} />
              </p>
            )}
            {request.agentPaused && (
              <p className="notice" role="note" data-testid="paused-notice">
                The agent is paused until {when(request.agentPaused.until)} (<SafeText text={request.agentPaused.reason} inline max={200} />): approvals wait
                for the pause to end; you may reject now.
              </p>
            )}
            <div className="decide-buttons">
              {canApprove && (
                <button type="button" className="primary" onClick={() => void approveClicked({ kind: 'approve' })}>
                  Approve <kbd>a</kbd>
                </button>
              )}
              {canModify &&
                request.alternatives.map((alt) =>
                  alt.blocked ? (
                    // Blocked by policy when the request was made: shown, never choosable (the server refuses it too).
                    <button type="button" key={alt.name} className="alt" disabled data-testid="blocked-alternative" title={`blocked by policy: ${alt.blocked.rules.join(', ')}`}>
                      Alternative blocked by policy: <SafeText text={alt.name} inline max={60} noExpand /> <span className="mono">({alt.action})</span> —{' '}
                      <SafeText text={alt.blocked.rules.join(', ')} inline max={200} noExpand />
                    </button>
                  ) : (
                    <button type="button" key={alt.name} className="alt" onClick={() => void approveClicked({ kind: 'approve', alternative: alt.name })}>
                      Approve alternative: <SafeText text={alt.name} inline max={60} noExpand /> <span className="mono">({alt.action})</span>
                    </button>
                  ),
                )}
              {canModify && (
                <button type="button" onClick={() => setModifying(!modifying)} aria-expanded={modifying}>
                  Modify arguments… <kbd>m</kbd>
                </button>
              )}
              <button type="button" className="danger" onClick={() => setDialog({ kind: 'reject' })}>
                Reject… <kbd>r</kbd>
              </button>
              {canEscalate && (
                <button type="button" data-testid="escalate" onClick={() => setEscalating(esc.level)}>
                  Escalate to level {esc.level + 1}…
                </button>
              )}
            </div>
            {esc?.finalAuthority && (
              <p className="notice" role="note" data-testid="final-authority-notice">
                Final authority: at this level any one of {levelPeople(esc)} may decide alone, whatever the approvals still needed.
              </p>
            )}
            {actionError && (
              <p className="error" role="alert">
                {actionError}
              </p>
            )}
            {modifying && canModify && <ModifyArgs request={request} onCancel={() => setModifying(false)} onSubmit={(args) => setDialog({ kind: 'approve', args })} />}
          </>
        ) : (
          <DecisionSummary request={request} />
        )}
      </section>

      <Similar request={request} me={me} />

      {dialog?.kind === 'approve' && <ApproveDialog request={request} choice={dialog} onClose={() => setDialog(null)} onDecided={onDecided} />}
      {dialog?.kind === 'reject' && <RejectDialog request={request} onClose={() => setDialog(null)} onDecided={onDecided} />}
      {escalating !== null && <EscalateDialog request={request} level={escalating} onClose={() => setEscalating(null)} onEscalated={onDecided} />}
    </article>
  );
}

/** Who the current escalation level names, from the policy: `lead`, `cfo; group board`. */
function levelPeople(esc: EscalationInfo): string {
  const groups = esc.groups ?? [];
  return [esc.role ?? '', (esc.operators ?? []).join(', '), groups.length ? `${groups.length === 1 ? 'group' : 'groups'} ${groups.join(', ')}` : ''].filter(Boolean).join('; ');
}

/** Back to the screen the card was opened from: one of the app's fixed routes, never data. */
function BackLink({ from }: { from: Origin }) {
  const href = ORIGIN_HREF[from];
  return <a href={href}>← {ORIGIN_LABEL[from]}</a>;
}

function SlaCountdown({ request }: { request: ApprovalRequest }) {
  const now = useNow();
  const sla = slaLeft(dueAt(request), now);
  const esc = escalationOf(request);
  return (
    <span className={`sla ${sla.overdue ? 'overdue' : sla.soon ? 'soon' : ''}`} aria-live="off">
      SLA: {sla.text}
      {esc && (
        <>
          {' '}
          · escalation level {esc.level}
          {esc.levels ? ` of ${esc.levels}` : ''}
          {levelPeople(esc) ? ` (${levelPeople(esc)})` : ''}
        </>
      )}
    </span>
  );
}

function Assessment({ request }: { request: ApprovalRequest }) {
  const a = request.assessment;
  return (
    <section className="computed-zone" aria-labelledby="computed-title">
      <h2 id="computed-title">
        Countersign's assessment <span className="zone-tag">computed by policy v{request.policyVersion}</span>
      </h2>
      <dl className="facts">
        <div>
          <dt>Risk</dt>
          <dd>
            <RiskBadge level={a.riskLevel} /> score <strong>{score(a.riskScore)}</strong>
          </dd>
        </div>
        <div>
          <dt>Automation level</dt>
          <dd>{a.automationLevel}</dd>
        </div>
        <div>
          <dt>Route</dt>
          <dd>{a.route.replace('_', ' ')}</dd>
        </div>
        <div>
          <dt>SLA</dt>
          <dd>{a.slaSeconds === null ? 'none' : `${duration(a.slaSeconds)} (due ${when(a.slaDueAt)})`}</dd>
        </div>
        <div>
          <dt>Step-up MFA</dt>
          <dd>{a.mfaRequired ? 'required to approve' : 'not required'}</dd>
        </div>
        {request.matchCode !== undefined && (
          <div>
            <dt>Match code</dt>
            <dd>
              <strong className="mono" data-testid="match-code">{request.matchCode}</strong> — type it when the approval is critical: this request, or a change or alternative that makes it so (shown only here, never in notifications)
            </dd>
          </div>
        )}
        {a.approval && (
          <div>
            <dt>Needs</dt>
            <dd>
              {/* a label can name an approver group or operator the agent asked for */}
              <SafeText text={a.approval.stages.map((s) => s.label).join(', then ')} inline max={400} />
            </dd>
          </div>
        )}
      </dl>
      {request.action === AGGREGATE_ACTION && <AggregateSummary request={request} />}
      <h3>Risk factors</h3>
      <table className="factors">
        <thead>
          <tr>
            <th scope="col">Factor</th>
            <th scope="col">Value</th>
            <th scope="col">Weight</th>
            <th scope="col">Contribution</th>
            <th scope="col">Why</th>
          </tr>
        </thead>
        <tbody>
          {a.factors.map((f) => (
            <tr key={f.name}>
              <th scope="row">{f.name}</th>
              <td>{score(f.value)}</td>
              <td>{score(f.weight)}</td>
              <td>
                <span className="bar" aria-hidden="true">
                  <span className={`bar-fill w${Math.min(20, Math.round((f.contribution / Math.max(a.riskScore, 0.01)) * 20))}`} />
                </span>
                {score(f.contribution)}
              </td>
              <td>
                <SafeText text={f.detail} inline max={160} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Matched rules</h3>
      {a.matchedRules.length === 0 ? (
        <p className="muted">No policy rule matched.</p>
      ) : (
        <ul className="rules">
          {a.matchedRules.map((rule) => (
            <li key={rule.name}>
              <strong className="mono">{rule.name}</strong>: <SafeText text={rule.reason} inline max={300} />
              {rule.effects.length > 0 && <span className="effects"> → {rule.effects.join(', ')}</span>}
            </li>
          ))}
        </ul>
      )}
      {a.reasons.length > 0 && (
        <>
          <h3>Why it needs {a.route === 'review' ? 'a human' : a.route === 'block' ? 'to be blocked' : 'no human'}</h3>
          <ul>
            {a.reasons.map((r, i) => (
              <li key={i}>
                <SafeText text={r} inline max={300} />
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}

type AggregateMember = { id: string; action: string; value: number | null };
const isAggregateMember = (m: unknown): m is AggregateMember =>
  typeof m === 'object' && m !== null && typeof (m as AggregateMember).id === 'string' && typeof (m as AggregateMember).action === 'string';
const amount = (v: unknown) => (typeof v === 'number' ? v.toLocaleString('en-US') : 'not stated');

/** An aggregate review (`onSlicing: aggregate`): what it stands for, built by the server from the members it lists. */
function AggregateSummary({ request }: { request: ApprovalRequest }) {
  const members = Array.isArray(request.args['requests']) ? (request.args['requests'] as unknown[]).filter(isAggregateMember) : [];
  return (
    <section className="aggregate" aria-labelledby="aggregate-title" data-testid="aggregate-summary">
      <h3 id="aggregate-title">Aggregate review of {members.length} requests</h3>
      <p>
        Slicing was detected, so these requests from <SafeText text={request.agentName} inline max={100} /> are reviewed together, as one. Approving or
        rejecting here decides every one of them; each runs with its own arguments (listed under Arguments).
      </p>
      <dl className="facts">
        <div>
          <dt>Total value</dt>
          <dd data-testid="aggregate-total">{amount(request.args['totalValue'])}</dd>
        </div>
      </dl>
      <table className="factors">
        <thead>
          <tr>
            <th scope="col">Request</th>
            <th scope="col">Action</th>
            <th scope="col">Value (claimed)</th>
          </tr>
        </thead>
        <tbody>
          {members.map((m) => (
            <tr key={m.id}>
              <td>
                <a className="mono" href={requestHref(m.id)}>
                  <SafeText text={m.id} inline max={40} noExpand />
                </a>
              </td>
              <td className="mono">
                <SafeText text={m.action} inline max={80} noExpand />
              </td>
              <td>{m.value === null ? '—' : amount(m.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

/** On a request that an aggregate review decides: where to decide it instead. */
function AggregateNotice({ aggregate }: { aggregate: NonNullable<ApprovalRequest['aggregate']> }) {
  return (
    <p className="notice" role="note" data-testid="aggregate-notice">
      {aggregate.id ? (
        <>
          Slicing was detected: this request is decided together with the agent's other requests in aggregate review{' '}
          <a className="mono" href={requestHref(aggregate.id)}>
            {aggregate.id}
          </a>
          . Approve it there; you may still reject this one alone.
        </>
      ) : (
        <>
          Slicing was detected: this request is being collected into one aggregate review with the agent's other requests
          {aggregate.collectingUntil ? ` (put together ${when(aggregate.collectingUntil)})` : ''}. It can be approved only as part of it; you may still reject
          this one alone.
        </>
      )}
    </p>
  );
}

function Claims({ request }: { request: ApprovalRequest }) {
  const ctx = request.context as Record<string, unknown>;
  const extras = Object.fromEntries(Object.entries(ctx).filter(([k]) => !KNOWN_CONTEXT.has(k)));
  const attack = Array.isArray(ctx['attack']) ? (ctx['attack'] as unknown[]).filter((x): x is string => typeof x === 'string') : [];
  const evidence = Array.isArray(ctx['evidence']) ? (ctx['evidence'] as unknown[]) : [];
  const incidents = Array.isArray(ctx['relatedIncidents']) ? (ctx['relatedIncidents'] as unknown[]) : [];
  return (
    <section className="agent-zone" aria-labelledby="claims-title">
      <h2 id="claims-title">
        What the agent claims <span className="zone-tag warn">agent-supplied · unverified</span>
      </h2>
      <dl className="facts">
        {request.action !== AGGREGATE_ACTION && ( // an aggregate's description is Countersign's, summed up in the assessment
          <div>
            <dt>Description</dt>
            <dd className="description">{request.description ? <SafeText text={request.description} max={600} maxLines={10} /> : <NoDescription />}</dd>
          </div>
        )}
        <div>
          <dt>Confidence (claimed)</dt>
          <dd>{request.confidence === null ? 'not given (counted as 0.5)' : request.confidence.toFixed(2)}</dd>
        </div>
        {request.riskHint && (
          <div>
            <dt>Risk hint (claimed)</dt>
            <dd>{request.riskHint}</dd>
          </div>
        )}
        {'target' in ctx && (
          <div>
            <dt>Target</dt>
            <dd>
              <JsonTree value={ctx['target']} label="target" />
            </dd>
          </div>
        )}
        {'blastRadius' in ctx && (
          <div>
            <dt>Blast radius</dt>
            <dd>
              <JsonTree value={ctx['blastRadius']} label="blast radius" />
            </dd>
          </div>
        )}
        {valueLines(request.assessment.value, ctx['value'], 'value' in ctx).map((line) => (
          <div key={line.label} data-testid={line.counted ? 'value-counted' : undefined}>
            <dt>{line.label}</dt>
            <dd className={line.counted ? 'mono' : undefined}>{line.counted ? <strong>{line.text}</strong> : <SafeText text={line.text} inline max={200} noExpand />}</dd>
          </div>
        ))}
        {(['reversible', 'threatScore', 'timeSensitivity'] as const)
          .filter((k) => k in ctx)
          .map((k) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>
                <JsonTree value={ctx[k]} />
              </dd>
            </div>
          ))}
      </dl>
      {attack.length > 0 && (
        <>
          <h3>ATT&amp;CK techniques</h3>
          <ul className="attack">
            {attack.map((id, i) => {
              const known = techniqueName(id);
              return (
                <li key={i}>
                  <span className="mono">
                    <SafeText text={id} inline max={20} />
                  </span>{' '}
                  {known ? (
                    <span>
                      {known.name}
                      {!known.exact && ' (sub-technique of)'}
                    </span>
                  ) : (
                    <span className="muted">unknown technique</span>
                  )}
                  {techniqueReference(id) && <span className="muted small"> · {techniqueReference(id)}</span>}
                </li>
              );
            })}
          </ul>
        </>
      )}
      {evidence.length > 0 && (
        <>
          <h3>Evidence ({evidence.length})</h3>
          <ol className="evidence">
            {evidence.map((e, i) => (
              <li key={i}>{typeof e === 'string' ? <SafeText text={e} max={400} maxLines={6} /> : <JsonTree value={e} label={`evidence ${i + 1}`} />}</li>
            ))}
          </ol>
        </>
      )}
      {incidents.length > 0 && (
        <>
          <h3>Related incidents</h3>
          <ul>
            {incidents.map((x, i) => (
              <li key={i}>{typeof x === 'string' ? <SafeText text={x} inline max={200} /> : <JsonTree value={x} />}</li>
            ))}
          </ul>
        </>
      )}
      <h3>Arguments</h3>
      <div className="args">
        <JsonTree value={request.args} label="arguments" />
      </div>
      {request.alternatives.length > 0 && (
        <>
          <h3>Alternatives offered</h3>
          <ul className="alternatives">
            {request.alternatives.map((alt) => (
              <li key={alt.name}>
                <strong>
                  <SafeText text={alt.name} inline max={100} />
                </strong>{' '}
                → <span className="mono">{alt.action}</span>
                {alt.description && (
                  <div>
                    <SafeText text={alt.description} max={300} />
                  </div>
                )}
                <JsonTree value={alt.args} label={`arguments of alternative ${alt.name}`} />
              </li>
            ))}
          </ul>
        </>
      )}
      {Object.keys(extras).length > 0 && (
        <>
          <h3>Other context</h3>
          <JsonTree value={extras} label="other context" />
        </>
      )}
      {request.approvers.length > 0 && (
        <>
          <h3>Approvers the agent asked for</h3>
          <JsonTree value={request.approvers} />
        </>
      )}
    </section>
  );
}

function Progress({ request }: { request: ApprovalRequest }) {
  if (request.reviews.length === 0) return null;
  return (
    <div className="progress">
      <h3>Votes so far</h3>
      <Reviews request={request} />
    </div>
  );
}

function Reviews({ request }: { request: ApprovalRequest }) {
  return (
    <ul className="reviews">
      {request.reviews.map((v) => (
        <li key={v.id}>
          <strong>
            <SafeText text={v.reviewer.name} inline max={100} />
          </strong>{' '}
          {v.verdict === 'approve' ? 'approved' : 'rejected'}
          {v.alternative && (
            <>
              {' '}
              the alternative <SafeText text={v.alternative} inline max={100} />
            </>
          )}
          {v.args && ' with modified arguments'} at {when(v.at)}
          {v.reason && (
            <>
              : “<SafeText text={v.reason} inline max={300} />”
            </>
          )}
        </li>
      ))}
    </ul>
  );
}

function deciderText(d: Decision): string {
  if (d.decidedBy === 'reviewers') return d.deciders.map((x) => x.name).join(', ');
  if (d.decidedBy === 'policy') return 'policy (automatically)';
  if (d.decidedBy === 'timeout') return 'timeout (no decision in time; fail closed)';
  return 'the requesting agent';
}

function DecisionSummary({ request }: { request: ApprovalRequest }) {
  const d = request.decision;
  const changes = useMemo(() => (d?.modified && d.args ? diffJson(request.args, d.args) : []), [d, request.args]);
  if (!d) return <p>Status: {request.status}</p>;
  return (
    <div className={`decision outcome-${d.outcome}`}>
      <p className="decision-line">
        <StatusBadge status={request.status} /> <strong>{d.outcome}</strong> by <strong data-testid="decider">{deciderText(d)}</strong> at {when(d.at)}
      </p>
      {d.reason && (
        <p>
          Reason: “<SafeText text={d.reason} max={500} />”
        </p>
      )}
      {d.alternative && (
        <p>
          Chosen alternative: <SafeText text={d.alternative} inline max={100} /> (<span className="mono">{d.action}</span>)
        </p>
      )}
      {changes.length > 0 && (
        <>
          <h3>Arguments changed by the reviewer</h3>
          <DiffList changes={changes} />
        </>
      )}
      {request.reviews.length > 0 && (
        <>
          <h3>Votes</h3>
          <Reviews request={request} />
        </>
      )}
      {request.execution && (
        <p>
          Execution reported {request.execution.status} at {when(request.execution.at)}
          {request.execution.error && (
            <>
              : <SafeText text={request.execution.error} inline max={300} />
            </>
          )}
        </p>
      )}
    </div>
  );
}

export function DiffList({ changes }: { changes: Change[] }) {
  return (
    <table className="diff">
      <thead>
        <tr>
          <th scope="col">Change</th>
          <th scope="col">Path</th>
          <th scope="col">Before</th>
          <th scope="col">After</th>
        </tr>
      </thead>
      <tbody>
        {changes.map((c, i) => (
          <tr key={i} className={`diff-${c.kind}`}>
            <td>{c.kind}</td>
            <td className="mono">
              <SafeText text={c.path} inline max={200} />
            </td>
            <td>{c.kind === 'added' ? '—' : <JsonTree value={c.before} />}</td>
            <td>{c.kind === 'removed' ? '—' : <JsonTree value={c.after} />}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function ModifyArgs({ request, onCancel, onSubmit }: { request: ApprovalRequest; onCancel: () => void; onSubmit: (args: Record<string, unknown>) => void }) {
  const [text, setText] = useState(() => JSON.stringify(request.args, null, 2));
  const [reviewing, setReviewing] = useState(false);
  const check = useMemo(() => checkArgs(text, request.args), [text, request.args]);
  const changes = useMemo(() => (check.ok ? diffJson(request.args, check.value) : []), [check, request.args]);
  return (
    <div className="modify">
      <label className="field" htmlFor="args-editor">
        Arguments (JSON). No schema is registered for <span className="mono">{request.action}</span>; the original arguments serve as the shape.
      </label>
      <textarea
        id="args-editor"
        className="mono json-editor"
        spellCheck={false}
        rows={Math.min(20, Math.max(6, text.split('\n').length + 1))}
        value={text}
        aria-invalid={!check.ok}
        aria-describedby="args-check"
        onChange={(e) => {
          setText(e.target.value);
          setReviewing(false);
        }}
      />
      <div id="args-check" aria-live="polite">
        {!check.ok && <p className="error">{check.error}</p>}
        {check.ok && check.warnings.length > 0 && (
          <ul className="warnings">
            {check.warnings.map((w, i) => (
              <li key={i}>
                Warning: <SafeText text={w} inline max={200} />
              </li>
            ))}
          </ul>
        )}
      </div>
      {!reviewing ? (
        <div className="dialog-actions">
          <button type="button" disabled={!check.ok || changes.length === 0} onClick={() => setReviewing(true)}>
            Review changes
          </button>
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
          {check.ok && changes.length === 0 && <span className="muted">No changes yet.</span>}
        </div>
      ) : (
        <div className="modify-review">
          <h3>Your changes to the agent's arguments</h3>
          <DiffList changes={changes} />
          <div className="dialog-actions">
            <button type="button" className="primary" disabled={!check.ok} onClick={() => check.ok && onSubmit(check.value)}>
              Approve with these arguments…
            </button>
            <button type="button" onClick={() => setReviewing(false)}>
              Keep editing
            </button>
          </div>
        </div>
      )}
    </div>
  );
}

/** Rows listed in the card's history; the counts cover the whole window the risk factor reads (200). */
const SIMILAR_ROWS = 20;

function Similar({ request, me }: { request: ApprovalRequest; me: string }) {
  const [items, setItems] = useState<ApprovalRequest[] | null>(null);
  useEffect(() => {
    let cancelled = false;
    // The requests before this one, newest first: the same set the `history` risk factor
    // counted when this request was proposed (the agent's last 200 for the action).
    const load = async () => {
      const out: ApprovalRequest[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < 5; page++) {
        const got = await api.list({ agentId: request.agentId, action: request.action, limit: 200, cursor });
        out.push(...got.items.filter((r) => r.createdAt < request.createdAt));
        cursor = got.nextCursor ?? undefined;
        if (!cursor || out.length >= 200) break;
      }
      return out;
    };
    load().then(
      (list) => !cancelled && setItems(list),
      () => !cancelled && setItems([]),
    );
    return () => {
      cancelled = true;
    };
  }, [request.agentId, request.action, request.createdAt]);
  const outcomes = useMemo(() => (items ? pastOutcomes(items, request) : null), [items, request]);
  const factor = request.assessment.factors.find((f) => f.name === 'history');
  return (
    <section className="similar" aria-labelledby="similar-title">
      <h2 id="similar-title">
        Earlier requests: <span className="mono">{request.action}</span> from this agent
      </h2>
      {items === null ? (
        <p>Loading…</p>
      ) : items.length === 0 || !outcomes ? (
        <p className="muted">No earlier requests for this action from this agent.</p>
      ) : (
        <>
          <p data-testid="similar-summary">
            Before this request: {outcomes.requests} request{outcomes.requests === 1 ? '' : 's'}, {outcomesText(outcomes)}
            {outcomes.pending > 0 ? `; ${outcomes.pending} still pending` : ''}. Each approval, rejection, success and failure counts as one outcome, as in
            the <em>history</em> risk factor{factor && !factor.detail.startsWith(`${outcomes.outcomes} past outcomes`) && !(outcomes.outcomes === 0 && factor.detail.startsWith('no history'))
              ? ' (which was computed when the request was proposed; some have been decided since)'
              : ''}
            .{items.length > SIMILAR_ROWS ? ` The ${SIMILAR_ROWS} most recent:` : ''}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Proposed</th>
                <th scope="col">Outcome</th>
                <th scope="col">Decided by</th>
                <th scope="col">Risk</th>
                <th scope="col">Arguments (agent-supplied)</th>
              </tr>
            </thead>
            <tbody>
              {items.slice(0, SIMILAR_ROWS).map((r) => (
                <tr key={r.id}>
                  <td>
                    <a href={requestHref(r.id)}>{when(r.createdAt)}</a>
                  </td>
                  <td>
                    <StatusBadge status={r.status} />
                  </td>
                  <td>{r.decision ? deciderText(r.decision).replace(me, `${me} (you)`) : '—'}</td>
                  <td>
                    <RiskBadge level={r.assessment.riskLevel} score={r.assessment.riskScore} />
                  </td>
                  <td>
                    <SafeText text={JSON.stringify(r.args)} inline max={80} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
