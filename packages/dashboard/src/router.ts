/**
 * Hash routes, so the server serves one file and links work from anywhere:
 *   #/queue · #/requests/<id>[?choose=approve|reject|alternative:<name>] · #/history · #/supervised
 *   · #/metrics · #/account
 * `?choose=` comes from notification links: it preselects a choice, and deciding still takes
 * a confirmation in the page (opening a link never decides anything). Which screen a card was
 * opened from is remembered by `useRoute` (not put in the link), so its back link returns there.
 */
import { useEffect, useState } from 'react';

/** Screens a request card can be opened from (and goes back to). */
export type Origin = 'queue' | 'history' | 'supervised';
const ORIGINS: ReadonlySet<string> = new Set<Origin>(['queue', 'history', 'supervised']);

export type Route =
  | { name: 'queue' }
  | { name: 'request'; id: string; choose: string | null; /** Where the card goes back to; undefined: the queue. */ from: Origin | undefined }
  | { name: 'history' }
  | { name: 'supervised' }
  | { name: 'metrics' }
  | { name: 'account' };

export function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#/, '').split('?', 2);
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'requests' && parts[1] && /^req_[0-9a-z]{26}$/.test(decodeURIComponent(parts[1]))) {
    return { name: 'request', id: decodeURIComponent(parts[1]), choose: new URLSearchParams(query).get('choose'), from: undefined };
  }
  if (parts[0] === 'history') return { name: 'history' };
  if (parts[0] === 'supervised') return { name: 'supervised' };
  if (parts[0] === 'metrics') return { name: 'metrics' };
  if (parts[0] === 'account') return { name: 'account' };
  return { name: 'queue' };
}

export function requestHref(id: string): string {
  return `#/requests/${encodeURIComponent(id)}`;
}

/**
 * The route after a hash change, given the one before: a card opened from History or Supervised
 * goes back there, one opened from another card keeps that card's origin, anything else (a
 * notification link, a reload) goes back to the queue.
 */
export function nextRoute(previous: Route | null, hash: string): Route {
  const route = parseRoute(hash);
  if (route.name !== 'request') return route;
  const from = previous?.name === 'request' ? previous.from : previous && ORIGINS.has(previous.name) && previous.name !== 'queue' ? (previous.name as Origin) : undefined;
  return { ...route, from };
}

export const ORIGIN_LABEL: Record<Origin, string> = { queue: 'Queue', history: 'History', supervised: 'Supervised' };
export const ORIGIN_HREF: Record<Origin, string> = { queue: '#/queue', history: '#/history', supervised: '#/supervised' };

export function navigate(hash: string): void {
  window.location.hash = hash;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    // Each change is judged by the URL it went to (the event's newURL), not by the hash when
    // React runs the updater: two changes before one render (a loaded machine) would otherwise
    // both see the second, and a card opened from the queue would go "back" to History.
    const onChange = (e: HashChangeEvent) => {
      const hash = new URL(e.newURL).hash;
      setRoute((previous) => nextRoute(previous, hash));
    };
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
