/**
 * The signed-in operator's account: enrolling an authenticator app for step-up MFA. The server
 * shows a new secret once (`POST /v1/operators/me/totp`); the page turns its otpauth:// URI into
 * a QR code drawn as SVG from React elements (no HTML string, so the CSP's Trusted Types hold),
 * and the enrolment counts only after a first valid code (`…/totp/confirm`). The secret lives in
 * this component's state only, and is dropped once confirmed or when the page is left.
 */
import qrcode from 'qrcode-generator';
import { useCallback, useEffect, useMemo, useState } from 'react';
import { api, type FactorProof, type Operator, type WebAuthnCredential } from '../api.ts';
import { createPasskey, getAssertion, webauthnAvailable, type StepUp } from '../webauthn.ts';
import { explain } from '../components/Dialogs.tsx';

type Enrolment = { secret: string; otpauthUri: string; encryptedAtRest: boolean };

export function AccountScreen({ operator }: { operator: Operator }) {
  const [status, setStatus] = useState<{ enrolled: boolean; pending: boolean } | null>(null);
  const [enrolment, setEnrolment] = useState<Enrolment | null>(null);
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState(false);

  useEffect(() => {
    let cancelled = false;
    api.totpStatus().then(
      (s) => !cancelled && setStatus(s),
      (err: unknown) => !cancelled && setError(explain(err)),
    );
    return () => {
      cancelled = true;
    };
  }, []);

  const start = async () => {
    setBusy(true);
    setError(null);
    try {
      const e = await api.totpEnrol();
      setEnrolment({ secret: e.secret, otpauthUri: e.otpauthUri, encryptedAtRest: e.encryptedAtRest });
    } catch (err) {
      setError(explain(err));
    } finally {
      setBusy(false);
    }
  };

  const confirm = async () => {
    if (!/^\d{6}$/.test(code)) {
      setError('Type the 6-digit code your authenticator app shows now.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      // Beside a passkey, one of them approves the new factor (a stolen session cannot add a TOTP of its own).
      const { stepUp } = await api.totpChallenge();
      await api.totpConfirm(code, stepUp?.webauthn ? { webauthn: await getAssertion(stepUp.webauthn) } : {});
      setEnrolment(null); // the secret is not shown again
      setCode('');
      setDone(true);
      setStatus({ enrolled: true, pending: false });
    } catch (err) {
      setError(explain(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="account-title">
      <h1 id="account-title">Your account</h1>
      <p>
        Signed in as <strong>{operator.name}</strong> ({operator.roles.join(', ')}).
      </p>
      <h2>Authenticator app (step-up MFA)</h2>
      <p>
        Where the policy asks for step-up MFA (by default: critical requests), approving needs a fresh code from an authenticator app (any TOTP app: Google
        Authenticator, Microsoft Authenticator, 1Password, Aegis…). Rejecting never does.
      </p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {status === null && !error && <p>Checking your enrolment…</p>}
      {status?.enrolled && (
        <p className="notice" role="status" data-testid="totp-enrolled">
          {done ? 'Done: your authenticator is enrolled.' : 'Your authenticator is enrolled.'} Approvals that need step-up MFA will ask for its current code.
          A confirmed enrolment cannot be replaced from here (a stolen session must not be able to swap it).
        </p>
      )}
      {status && !status.enrolled && !enrolment && (
        <>
          <p>You have not enrolled an authenticator yet{status.pending ? ' (an enrolment was started but never confirmed; starting again replaces it)' : ''}.</p>
          <button type="button" className="primary" disabled={busy} onClick={() => void start()}>
            Enrol an authenticator app
          </button>
        </>
      )}
      {enrolment && (
        <div className="enrol">
          <ol>
            <li>
              Scan this QR code with your authenticator app:
              <QrCode text={enrolment.otpauthUri} label={`QR code to add Countersign (${operator.name}) to an authenticator app`} />
            </li>
            <li>
              Or type this secret into it by hand. It is shown only now: once you confirm, nobody can display it again.
              <p className="secret mono" data-testid="totp-secret">
                {enrolment.secret}
              </p>
              {!enrolment.encryptedAtRest && (
                <p className="muted small">The server stores it without an encryption key (COUNTERSIGN_ENCRYPTION_KEY is not set).</p>
              )}
            </li>
            <li>
              <form
                onSubmit={(e) => {
                  e.preventDefault();
                  void confirm();
                }}
              >
                <label className="field">
                  The 6-digit code the app shows now
                  <input
                    type="text"
                    inputMode="numeric"
                    autoComplete="one-time-code"
                    pattern="[0-9]{6}"
                    maxLength={6}
                    value={code}
                    onChange={(e) => setCode(e.target.value.trim())}
                  />
                </label>
                <button type="submit" className="primary" disabled={busy}>
                  Confirm enrolment
                </button>
              </form>
            </li>
          </ol>
        </div>
      )}
      <Passkeys totpEnrolled={status?.enrolled === true} />
    </section>
  );
}

/**
 * Passkeys and security keys (WebAuthn): phishing-resistant step-up, bound to this dashboard's
 * origin. Enrolling runs the browser's registration ceremony over a server challenge; the list
 * shows each credential with its last use, and any can be revoked here (an admin can revoke
 * anyone's over the API). Adding or revoking one, when you already have a factor, first proves
 * it (the server asks, `stepUp`): a touch of one of your passkeys, or the authenticator app's
 * code typed below — so a stolen session cannot add its own key or strip yours.
 */
function Passkeys({ totpEnrolled }: { totpEnrolled: boolean }) {
  const [items, setItems] = useState<WebAuthnCredential[] | null>(null);
  const [name, setName] = useState('');
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [added, setAdded] = useState(false);
  const load = useCallback(
    () =>
      api.webauthnList().then(
        (r) => setItems(r.credentials),
        (err: unknown) => setError(explain(err)),
      ),
    [],
  );
  useEffect(() => {
    void load();
  }, [load]);
  /** The proof a change asks for: the typed code when TOTP is accepted and one was typed, else a passkey's assertion. */
  const prove = async (stepUp: StepUp | null): Promise<FactorProof> => {
    if (stepUp === null) return {};
    if (stepUp.factors.includes('totp') && /^\d{6}$/.test(code)) return { totp: code };
    if (stepUp.webauthn) return { webauthn: await getAssertion(stepUp.webauthn) };
    throw new Error('This change needs your authenticator app’s current code: type it in “Authenticator code” and try again.');
  };
  const add = async () => {
    setBusy(true);
    setError(null);
    setAdded(false);
    try {
      const options = await api.webauthnOptions();
      const proof = await prove(options.stepUp);
      await api.webauthnRegister({ ...(await createPasskey(options, name)), ...proof });
      setName('');
      setCode('');
      setAdded(true);
      await load();
    } catch (err) {
      setError(err instanceof DOMException ? `The browser did not create or confirm a passkey (${err.name}): ${err.message}` : explain(err));
    } finally {
      setBusy(false);
    }
  };
  const revoke = async (id: string) => {
    setBusy(true);
    setError(null);
    try {
      const { stepUp } = await api.webauthnRevokeOptions(id);
      await api.webauthnRevoke(id, await prove(stepUp));
      setCode('');
      await load();
    } catch (err) {
      setError(err instanceof DOMException ? `The browser did not confirm with a passkey (${err.name}): ${err.message}` : explain(err));
    } finally {
      setBusy(false);
    }
  };
  const active = (items ?? []).filter((c) => c.revokedAt === null);
  return (
    <div className="passkeys" data-testid="passkeys">
      <h2>Passkeys and security keys (WebAuthn)</h2>
      <p>
        A passkey or a security key can stand in for the authenticator code wherever step-up MFA is asked, and is the only way to approve where the policy
        says <span className="mono">mfa: webauthn</span>. It signs each approval for this dashboard’s address only, so a look-alike sign-in page cannot relay it.
      </p>
      {!webauthnAvailable() && <p className="notice warn">This browser cannot use passkeys here (WebAuthn needs HTTPS or localhost).</p>}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {added && (
        <p className="notice" role="status" data-testid="passkey-added">
          Done: your passkey is enrolled.
        </p>
      )}
      {items !== null && active.length === 0 && <p>You have no passkey enrolled.</p>}
      {active.length > 0 && (
        <ul className="passkey-list">
          {active.map((c) => (
            <li key={c.id} data-testid="passkey">
              <strong>{c.name}</strong> <span className="muted small">({c.algorithm}, added {new Date(c.createdAt).toLocaleString()}{c.lastUsedAt ? `, last used ${new Date(c.lastUsedAt).toLocaleString()}` : ''}{c.intact ? '' : ', altered in the database: refused'})</span>{' '}
              {c.suspendedAt && (
                <span className="notice warn small" data-testid="passkey-suspended">
                  Suspended {new Date(c.suspendedAt).toLocaleString()}: its sign counter went back, so it may have been copied (or two uses ran out of order). It approves nothing; revoke it and add a new one.
                </span>
              )}{' '}
              <button type="button" disabled={busy} onClick={() => void revoke(c.id)}>
                Revoke {c.name}
              </button>
            </li>
          ))}
        </ul>
      )}
      {totpEnrolled && (
        <label className="field">
          Authenticator code (to add or revoke a passkey with your app instead of a passkey you have)
          <input type="text" inputMode="numeric" autoComplete="one-time-code" pattern="[0-9]{6}" maxLength={6} value={code} onChange={(e) => setCode(e.target.value.trim())} />
        </label>
      )}
      <label className="field">
        Name for a new passkey (optional)
        <input type="text" maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <button type="button" className="primary" disabled={busy || !webauthnAvailable()} onClick={() => void add()}>
        Add a passkey or security key
      </button>
    </div>
  );
}

/**
 * A QR code as an SVG path: one square per dark module, with the 4-module quiet zone scanners
 * need. Error correction M, the usual choice for otpauth URIs.
 */
export function QrCode({ text, label }: { text: string; label: string }) {
  const { size, path } = useMemo(() => {
    const qr = qrcode(0, 'M');
    qr.addData(text);
    qr.make();
    const count = qr.getModuleCount();
    let d = '';
    for (let row = 0; row < count; row++) {
      for (let col = 0; col < count; col++) if (qr.isDark(row, col)) d += `M${col + 4} ${row + 4}h1v1h-1z`;
    }
    return { size: count + 8, path: d };
  }, [text]);
  return (
    <svg className="qr" role="img" aria-label={label} viewBox={`0 0 ${size} ${size}`} width={size * 5} height={size * 5} shapeRendering="crispEdges" data-testid="totp-qr">
      <rect width={size} height={size} fill="#fff" />
      <path d={path} fill="#000" />
    </svg>
  );
}
