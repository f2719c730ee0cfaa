import { useEffect, useMemo, useState } from 'react';
import { api, setUnauthenticatedHandler, type SessionInfo } from './api.ts';
import { LiveQueue, useLive } from './live.ts';
import { useRoute, type Route } from './router.ts';
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
  const { pending } = useLive(live);
  const me = session.operator.name;
  useEffect(() => {
    document.title = pending.size > 0 ? `(${pending.size}) Countersign` : 'Countersign';
  }, [pending.size]);
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <span className="brand">Countersign</span>
        <nav aria-label="Main">
          <NavLink route={route} name="queue" href="#/queue">
            Queue <span className="count">{pending.size}</span>
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
        <span className="who">
          {me} <span className="muted">({session.operator.roles.join(', ')})</span>
        </span>
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
        <Screen route={route} live={live} me={me} meId={session.operator.id} />
      </main>
    </>
  );
}

function NavLink({ route, name, href, children }: { route: Route; name: Route['name']; href: string; children: React.ReactNode }) {
  const current = route.name === name || (name === 'queue' && route.name === 'request');
  return (
    <a href={href} aria-current={current ? 'page' : undefined} className={current ? 'current' : ''}>
      {children}
    </a>
  );
}

function Screen({ route, live, me, meId }: { route: Route; live: LiveQueue; me: string; meId: string }) {
  switch (route.name) {
    case 'request':
      return <RequestCard key={route.id} id={route.id} choose={route.choose} live={live} me={me} />;
    case 'history':
      return <HistoryScreen />;
    case 'supervised':
      return <SupervisedScreen me={me} />;
    case 'metrics':
      return <MetricsScreen />;
    default:
      return <QueueScreen live={live} meId={meId} />;
  }
}
