import { useEffect, useMemo, useState } from 'react';
import { api, setUnauthenticatedHandler, type SessionInfo } from './api.ts';
import { ShortcutHelp, typing } from './components/Dialogs.tsx';
import { LiveQueue, useLive } from './live.ts';
import { navigate, useRoute, type Route } from './router.ts';
import { AccountScreen } from './screens/Account.tsx';
import { HistoryScreen } from './screens/History.tsx';
import { MetricsScreen } from './screens/Metrics.tsx';
import { QueueScreen } from './screens/Queue.tsx';
import { RequestCard } from './screens/RequestCard.tsx';
import { SignIn } from './screens/SignIn.tsx';
import { SupervisedScreen } from './screens/Supervised.tsx';

export function App() {
  const [session, setSession] = useState<SessionInfo | null | 'loading'>('loading');
  useEffect(() => {
    setUnauthenticatedHandler(() => setSession(null));
    api.session().then(setSession, () => setSession(null));
    return () => setUnauthenticatedHandler(null);
  }, []);
  if (session === 'loading') return <p className="loading">Loading…</p>;
  if (session === null) return <SignIn onSignedIn={setSession} />;
  return <Shell session={session} onSignedOut={() => setSession(null)} />;
}

function Shell({ session, onSignedOut }: { session: SessionInfo; onSignedOut: () => void }) {
  const live = useMemo(() => new LiveQueue(), []);
  useEffect(() => {
    live.start();
    return () => live.stop();
  }, [live]);
  const route = useRoute();
  const { allPending } = useLive(live);
  const me = session.operator.name;
  useEffect(() => {
    document.title = allPending > 0 ? `(${allPending}) Countersign` : 'Countersign';
  }, [allPending]);
  // `?` opens the shortcut help from any screen; like every shortcut it never acts while a field
  // has focus, or while another dialog is open (the key then belongs to that dialog).
  const [help, setHelp] = useState(false);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key !== '?' || e.ctrlKey || e.metaKey || e.altKey || typing(e) || document.querySelector('dialog[open]')) return;
      e.preventDefault();
      setHelp(true);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Countersign</span>
        <nav aria-label="Main">
          <NavLink route={route} name="queue" href="#/queue">
            Queue <span className="count">{allPending}</span>
          </NavLink>
          <NavLink route={route} name="history" href="#/history">
            History
          </NavLink>
          <NavLink route={route} name="supervised" href="#/supervised">
            Supervised
          </NavLink>
          <NavLink route={route} name="metrics" href="#/metrics">
            Metrics
          </NavLink>
        </nav>
        <button type="button" className="who" aria-pressed={route.name === 'account'} title="Your account: authenticator app (step-up MFA)" onClick={() => navigate('#/account')}>
          {me} <span className="muted">({session.operator.roles.join(', ')})</span>
        </button>
        <button type="button" className="help-button" aria-label="Keyboard shortcuts" title="Keyboard shortcuts (?)" onClick={() => setHelp(true)}>
          ?
        </button>
        <button
          type="button"
          onClick={async () => {
            await api.signOut().catch(() => undefined);
            onSignedOut();
          }}
        >
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        <Screen route={route} live={live} session={session} />
      </main>
      {help && <ShortcutHelp onClose={() => setHelp(false)} />}
    </>
  );
}

function NavLink({ route, name, href, children }: { route: Route; name: Route['name']; href: string; children: React.ReactNode }) {
  // A request card belongs to the screen it was opened from.
  const current = route.name === name || (route.name === 'request' && (route.from ?? 'queue') === name);
  return (
    <a href={href} aria-current={current ? 'page' : undefined} className={current ? 'current' : ''}>
      {children}
    </a>
  );
}

function Screen({ route, live, session }: { route: Route; live: LiveQueue; session: SessionInfo }) {
  const me = session.operator.name;
  switch (route.name) {
    case 'request':
      return <RequestCard key={route.id} id={route.id} choose={route.choose} from={route.from ?? 'queue'} live={live} viewer={session.operator} />;
    case 'account':
      return <AccountScreen operator={session.operator} />;
    case 'history':
      return <HistoryScreen />;
    case 'supervised':
      return <SupervisedScreen me={me} />;
    case 'metrics':
      return <MetricsScreen />;
    default:
      return <QueueScreen live={live} viewer={session.operator} />;
  }
}
