/**
 * Sign-in: the operator token is sent once and exchanged for an HttpOnly session cookie. When the
 * server has an identity provider (`GET /sso/status`), a link starts single sign-on instead
 * (`/sso/login`: the server sends the browser to the provider and back); the token form stays
 * for the break-glass admin.
 */
import { useEffect, useState } from 'react';
import { api, ApiError, type SessionInfo } from '../api.ts';

export function SignIn({ onSignedIn }: { onSignedIn: (s: SessionInfo) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [sso, setSso] = useState<{ label: string } | null>(null);
  useEffect(() => {
    let live = true;
    api.ssoStatus().then(
      (s) => live && setSso(s.enabled ? { label: s.label } : null),
      () => live && setSso(null),
    );
    return () => {
      live = false;
    };
  }, []);
  return (
    <main className="signin" id="main">
      <h1>Countersign</h1>
      {sso && (
        <p>
          {/* A fixed route (never a link built from data): the server sends the browser on to the provider. */}
          <a className="button primary" href="/sso/login" data-testid="sso-login">
            {sso.label}
          </a>
        </p>
      )}
      <p>{sso ? 'Or sign in' : 'Sign in'} with your operator token (it starts with <span className="mono">cso_</span>). It is exchanged for a session cookie and not kept in this page.</p>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            const session = await api.signIn(token.trim());
            setToken('');
            onSignedIn(session);
          } catch (err) {
            setError(err instanceof ApiError && err.status === 401 ? 'That token is unknown or revoked.' : err instanceof ApiError ? err.message : String(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label className="field">
          Operator token
          <input type="password" name="token" autoComplete="off" spellCheck={false} required value={token} onChange={(e) => setToken(e.target.value)} />
        </label>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy || !token.trim()}>
          Sign in
        </button>
      </form>
    </main>
  );
}
