/**
 * Deciding: every keyboard decision takes a second, deliberate key in a dialog, and approving
 * a high or critical request always takes this confirmation, whatever the input device.
 */
import { getAssertion, payloadHashOf } from '../webauthn.ts';
import { useEffect, useRef, useState, type ReactNode } from 'react';
import { api, ApiError, type ApprovalRequest } from '../api.ts';
import { JsonTree } from './JsonTree.tsx';
import { RiskBadge } from './Badges.tsx';
import { SafeText } from './SafeText.tsx';

export type Choice = { kind: 'approve'; alternative?: string; args?: Record<string, unknown> } | { kind: 'reject' };

/** Why a decision was refused, in words a reviewer can act on. */
export function explain(err: unknown): string {
  if (!(err instanceof ApiError)) return (err as Error).message;
  switch (err.code) {
    case 'MFA_REQUIRED':
      return `Policy requires step-up MFA to approve this request: ${err.message}. Enrol an authenticator on your Account page (click your name at the top) if you have not.`;
    case 'MFA_INVALID':
      return `That authenticator code was not accepted: ${err.message}`;
    case 'COOLDOWN_ACTIVE':
      return `You are cooling down: ${err.message}. Another reviewer must approve it; you can still reject. A cool-down is never lifted by the person it applies to.`;
    case 'ALREADY_DECIDED':
      return 'Someone else decided this request first; the page shows their decision.';
    case 'ALREADY_REVIEWED':
      return 'You have already voted on this request.';
    case 'SELF_REVIEW':
      return 'You proposed this request, so you cannot review it.';
    case 'NOT_ELIGIBLE':
      return `You are not eligible for the current approval stage: ${err.message}`;
    case 'FORBIDDEN':
      return `Not allowed: ${err.message}`;
    default:
      return `${err.code}: ${err.message}`;
  }
}

export function Modal({ title, onClose, children, onKey }: { title: string; onClose: () => void; children: ReactNode; onKey?: (e: KeyboardEvent) => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (!dialog.open) {
      dialog.showModal();
      // Start on the element the dialog names (the confirm button, the reason field), not on
      // the first input, so the confirming key is never typed into a field by accident.
      dialog.querySelector<HTMLElement>('[data-autofocus]')?.focus();
    }
    const onCancel = (e: Event) => {
      e.preventDefault();
      onClose();
    };
    const keys = (e: KeyboardEvent) => onKey?.(e);
    dialog.addEventListener('cancel', onCancel);
    dialog.addEventListener('keydown', keys);
    return () => {
      dialog.removeEventListener('cancel', onCancel);
      dialog.removeEventListener('keydown', keys);
      if (dialog.open) dialog.close();
    };
  }, [onClose, onKey]);
  return (
    <dialog ref={ref} className="modal" aria-labelledby="modal-title">
      <h2 id="modal-title">{title}</h2>
      {children}
    </dialog>
  );
}

/** The key goes to a field (or a select): no shortcut may act on it, let alone type it. */
export const typing = (e: KeyboardEvent) => {
  const el = e.target as HTMLElement | null;
  return !!el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.tagName === 'SELECT' || el.isContentEditable);
};

export function ApproveDialog({ request, choice, onClose, onDecided }: { request: ApprovalRequest; choice: Extract<Choice, { kind: 'approve' }>; onClose: () => void; onDecided: (r: ApprovalRequest) => void }) {
  const [note, setNote] = useState('');
  const [totp, setTotp] = useState('');
  const [matchCode, setMatchCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // What approving needs, as the server's gate computed it for the payload that will run (the
  // union of the request's and that payload's own requirements). A modification or an
  // alternative not yet proposed is assessed by the server when it arrives, so its codes are
  // offered (optional) and the server says if they are needed.
  const proposing = choice.args !== undefined || choice.alternative !== undefined;
  const mfa = (proposing ? request.assessment.mfaRequired : (request.payload?.mfaRequired ?? request.assessment.mfaRequired)) || false;
  // `mfa: webauthn` (the server's gate says so for the payload): only a passkey or security key will do.
  const webauthnOnly = (proposing ? request.assessment.webauthnRequired === true : (request.payload?.webauthnRequired ?? request.assessment.webauthnRequired === true)) || false;
  // Ask for a code only from someone who can give one: the server says whether this reviewer has
  // a confirmed authenticator, and which passkeys. Unknown (the read failed) asks anyway and lets the server decide.
  const [enrolled, setEnrolled] = useState<boolean | null>(mfa || proposing ? null : true);
  const [passkeys, setPasskeys] = useState<number | null>(mfa || proposing ? null : 0);
  useEffect(() => {
    if (!mfa && !proposing) return;
    let cancelled = false;
    api.totpStatus().then(
      (s) => !cancelled && setEnrolled(s.enrolled),
      () => !cancelled && setEnrolled(true),
    );
    api.webauthnList().then(
      (r) => !cancelled && setPasskeys(r.credentials.filter((c) => c.revokedAt === null && c.intact).length),
      () => !cancelled && setPasskeys(0),
    );
    return () => {
      cancelled = true;
    };
  }, [mfa, proposing]);
  // With a passkey enrolled, it is the step-up (the code field stays for `mfa: true`, if the reviewer prefers it).
  const [useCode, setUseCode] = useState(false);
  // A modification of a request that needs no step-up keeps the optional code field (the server says if its payload needs more).
  const passkey = (passkeys ?? 0) > 0 && !useCode && (mfa || webauthnOnly);
  const offerTotp = (mfa || proposing) && !webauthnOnly && !passkey;
  const cannotApprove = webauthnOnly ? passkeys === 0 : mfa && enrolled === false && passkeys === 0;
  // Number matching: critical approvals repeat the code the request card shows (the server checks it).
  const matching = (request.payload?.matchCodeRequired ?? false) || request.assessment.riskLevel === 'critical' || proposing;
  // The exact payload that will run: a modification as typed, a chosen alternative, else the
  // payload the server says is current (another reviewer's modification, when there is one).
  const current = request.payload;
  const alternativeName = choice.alternative ?? (choice.args === undefined ? (current?.alternative ?? undefined) : undefined);
  const alternative = alternativeName ? request.alternatives.find((a) => a.name === alternativeName) : undefined;
  const runAction = choice.args ? request.action : alternative ? alternative.action : (current?.action ?? request.action);
  const runArgs = choice.args ?? (choice.alternative ? alternative?.args : current?.args) ?? alternative?.args ?? request.args;
  const modifiedByOther = !proposing && current !== undefined && current.alternative === null && JSON.stringify(current.args) !== JSON.stringify(request.args);

  const submit = async () => {
    if (busy || cannotApprove || enrolled === null || passkeys === null) return;
    if (mfa && offerTotp && !/^\d{6,8}$/.test(totp)) {
      setError('Policy requires step-up MFA: enter the 6–8 digit code from your authenticator.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // The passkey signs this approval: a challenge bound to this request, the exact payload shown here, and the verdict.
      let webauthn: Awaited<ReturnType<typeof getAssertion>> | undefined;
      if (passkey) {
        const options = await api.webauthnChallenge(request.id, await payloadHashOf(runAction, runArgs as Record<string, unknown>));
        webauthn = await getAssertion(options);
      }
      const decided = await api.review(request.id, {
        ...(webauthn ? { webauthn } : {}),
        verdict: 'approve',
        ...(note.trim() ? { reason: note.trim() } : {}),
        ...(choice.alternative ? { alternative: choice.alternative } : {}),
        ...(choice.args ? { args: choice.args } : {}),
        ...(offerTotp && totp ? { totp } : {}),
        ...(matching && matchCode ? { matchCode } : {}),
        // What this dialog showed: a payload changed since is refused (PAYLOAD_CHANGED), never approved unseen.
        ...(current ? { seenPayloadHash: current.payloadHash } : {}),
      });
      onDecided(decided);
    } catch (err) {
      setError(err instanceof DOMException ? `Your passkey did not sign (${err.name}): ${err.message}` : explain(err));
      setBusy(false);
    }
  };
  const onKey = (e: KeyboardEvent) => {
    if (!typing(e) && (e.key === 'y' || e.key === 'Y') && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      void submit();
    }
  };
  return (
    <Modal title={alternative ? 'Approve the alternative?' : choice.args ? 'Approve with modified arguments?' : 'Approve this request?'} onClose={onClose} onKey={onKey}>
      <p className="dialog-summary">
        <RiskBadge level={request.assessment.riskLevel} /> <strong className="mono">{runAction}</strong> for agent{' '}
        <strong>
          <SafeText text={request.agentName} inline max={100} />
        </strong>
        {alternative && (
          <>
            {' '}
            — alternative <SafeText text={alternative.name} inline max={100} /> instead of <span className="mono">{request.action}</span>
          </>
        )}
      </p>
      <div className="agent-zone compact">
        <p className="zone-label">
          Arguments that will run (agent-supplied{choice.args ? ', as you modified them' : modifiedByOther ? ', as another reviewer modified them' : ''})
        </p>
        <JsonTree value={runArgs} label="arguments that will run" />
      </div>
      <label className="field">
        Note (optional)
        <input type="text" value={note} maxLength={2000} onChange={(e) => setNote(e.target.value)} />
      </label>
      {mfa && (enrolled === null || passkeys === null) && <p>Checking your authenticator enrolment…</p>}
      {cannotApprove && webauthnOnly && (
        <p className="notice warn" role="note" data-testid="webauthn-not-enrolled">
          Policy requires a passkey or security key (WebAuthn) to approve this request, and you have none enrolled, so you cannot approve it. Add one on your
          account page, then come back. You can still reject it.
        </p>
      )}
      {passkey && (
        <p className="notice" role="note" data-testid="passkey-step-up">
          Your passkey signs this approval{webauthnOnly ? ' (policy requires a passkey or security key)' : ''}: your browser will ask for it when you confirm.{' '}
          {!webauthnOnly && enrolled && (
            <button type="button" className="link-button" onClick={() => setUseCode(true)}>
              Use an authenticator code instead
            </button>
          )}
        </p>
      )}
      {cannotApprove && !webauthnOnly && (
        <p className="notice warn" role="note" data-testid="mfa-not-enrolled">
          Policy requires step-up MFA to approve this request, and you have not enrolled an authenticator app yet, so you cannot approve it. Enrol on your
          account page (your name at the top: scan a QR code, type one code), then come back. You can still reject it.{' '}
          <button
            type="button"
            className="link-button"
            onClick={() => {
              onClose();
              window.location.hash = '#/account';
            }}
          >
            Enrol now
          </button>
        </p>
      )}
      {mfa && offerTotp && enrolled === true && (
        <label className="field">
          Authenticator code (step-up MFA required by policy)
          <input type="text" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6,8}" maxLength={8} value={totp} onChange={(e) => setTotp(e.target.value.trim())} />
        </label>
      )}
      {!mfa && offerTotp && (
        <label className="field">
          Authenticator code (if policy asks for one for this payload)
          <input type="text" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6,8}" maxLength={8} value={totp} onChange={(e) => setTotp(e.target.value.trim())} />
        </label>
      )}
      {matching && (
        <label className="field">
          Match code (the two digits on the request card)
          <input type="text" inputMode="numeric" autoComplete="off" pattern="[0-9]{2}" maxLength={2} value={matchCode} onChange={(e) => setMatchCode(e.target.value.trim())} />
        </label>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="dialog-actions">
        <button type="button" className="primary" data-autofocus disabled={busy || cannotApprove || enrolled === null || passkeys === null} onClick={() => void submit()}>
          Confirm approval <kbd>y</kbd>
        </button>
        <button type="button" onClick={onClose}>
          Cancel <kbd>Esc</kbd>
        </button>
      </div>
    </Modal>
  );
}

export function RejectDialog({ request, onClose, onDecided }: { request: ApprovalRequest; onClose: () => void; onDecided: (r: ApprovalRequest) => void }) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async () => {
    if (!reason.trim()) {
      setError('A rejection needs a reason: the agent and the audit trail get it.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onDecided(await api.review(request.id, { verdict: 'reject', reason: reason.trim() }));
    } catch (err) {
      setError(explain(err));
      setBusy(false);
    }
  };
  return (
    <Modal title="Reject this request?" onClose={onClose}>
      <p className="dialog-summary">
        <RiskBadge level={request.assessment.riskLevel} /> <strong className="mono">{request.action}</strong> for agent{' '}
        <strong>
          <SafeText text={request.agentName} inline max={100} />
        </strong>
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <label className="field">
          Reason (required)
          <textarea value={reason} maxLength={2000} rows={3} required data-autofocus onChange={(e) => setReason(e.target.value)} />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="submit" className="danger" disabled={busy}>
            Reject
          </button>
          <button type="button" onClick={onClose}>
            Cancel <kbd>Esc</kbd>
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Longest escalation reason the server takes (core MAX_ESCALATION_REASON): one line. */
const MAX_ESCALATION_REASON = 500;

/** What a refused escalation means for the reviewer (POST /v1/requests/:id/escalate). */
export function explainEscalation(err: unknown): string {
  if (err instanceof ApiError && err.code === 'ILLEGAL_TRANSITION') {
    const d = (err.details ?? {}) as { reason?: unknown; level?: unknown };
    if (d.reason === 'level_changed') {
      return `The request has moved on since you opened this: it is at escalation level ${typeof d.level === 'number' ? d.level : '?'} now. Nothing was changed; read it again and escalate again if it still needs it.`;
    }
    if (d.reason === 'last_level') return `It cannot go higher: ${err.message}`;
  }
  if (err instanceof ApiError && err.code === 'NOT_ELIGIBLE') return `You may not escalate it: only someone who may review it now can. ${err.message}`;
  return explain(err);
}

/**
 * Escalate now: one level up, with a reason the next level is told. The level is the one shown
 * when the dialog opened, so an escalation made meanwhile (a timeout, another reviewer) is
 * refused (level_changed) instead of moving the request two levels.
 */
export function EscalateDialog({ request, level, onClose, onEscalated }: { request: ApprovalRequest; level: number; onClose: () => void; onEscalated: (r: ApprovalRequest) => void }) {
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async () => {
    const text = reason.trim();
    if (!text) {
      setError('An escalation needs a reason: the next level is told it, and the audit trail keeps it.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      onEscalated(await api.escalate(request.id, { reason: text, fromLevel: level }));
    } catch (err) {
      setError(explainEscalation(err));
      setBusy(false);
    }
  };
  return (
    <Modal title="Escalate this request now?" onClose={onClose}>
      <p className="dialog-summary">
        <RiskBadge level={request.assessment.riskLevel} /> <strong className="mono">{request.action}</strong> from escalation level {level} to level {level + 1}. It is not
        decided: the next level is told, with your reason, and its deadline starts now.
      </p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <label className="field">
          Reason (required, one line)
          <input type="text" value={reason} maxLength={MAX_ESCALATION_REASON} required data-autofocus data-testid="escalate-reason" onChange={(e) => setReason(e.target.value)} />
        </label>
        {error && (
          <p className="error" role="alert" data-testid="escalate-error">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="submit" className="primary" disabled={busy} data-testid="escalate-submit">
            Escalate to level {level + 1}
          </button>
          <button type="button" onClick={onClose}>
            Cancel <kbd>Esc</kbd>
          </button>
        </div>
      </form>
    </Modal>
  );
}

/** Every keyboard shortcut, by screen. None of them types into a field: each is ignored while a field has focus. */
export const SHORTCUTS: ReadonlyArray<{ screen: string; keys: ReadonlyArray<[string, string]> }> = [
  { screen: 'Everywhere', keys: [['?', 'this help'], ['Esc', 'close a dialog']] },
  { screen: 'Queue', keys: [['j / ↓', 'next request'], ['k / ↑', 'previous request'], ['Enter', 'open the selected request'], ['a', 'approve the selected request (then y to confirm)'], ['r', 'reject the selected request (a reason is required)']] },
  { screen: 'Request', keys: [['a', 'approve (then y to confirm)'], ['m', 'modify the arguments'], ['r', 'reject (a reason is required)'], ['Esc', 'back to where you came from']] },
  { screen: 'Approval dialog', keys: [['y', 'confirm the approval']] },
];

export function ShortcutHelp({ onClose }: { onClose: () => void }) {
  return (
    <Modal title="Keyboard shortcuts" onClose={onClose}>
      {SHORTCUTS.map((group) => (
        <section key={group.screen} aria-label={group.screen}>
          <h3>{group.screen}</h3>
          <dl className="shortcuts">
            {group.keys.map(([key, what]) => (
              <div key={key}>
                <dt>
                  <kbd>{key}</kbd>
                </dt>
                <dd>{what}</dd>
              </div>
            ))}
          </dl>
        </section>
      ))}
      <p className="muted">Shortcuts never type into a field: while a field has focus, keys go to the field.</p>
      <div className="dialog-actions">
        <button type="button" data-autofocus onClick={onClose}>
          Close <kbd>Esc</kbd>
        </button>
      </div>
    </Modal>
  );
}
