/**
 * Hash routes, so the server serves one file and links work from anywhere:
 *   #/queue · #/requests/<id>[?choose=approve|reject|alternative:<name>] · #/history · #/supervised · #/metrics
 * `?choose=` comes from notification links: it preselects a choice, and deciding still takes
 * a confirmation in the page (opening a link never decides anything).
 */
import { useEffect, useState } from 'react';

export type Route =
  | { name: 'queue' }
  | { name: 'request'; id: string; choose: string | null }
  | { name: 'history' }
  | { name: 'supervised' }
  | { name: 'metrics' };

export function parseRoute(hash: string): Route {
  const [path = '', query = ''] = hash.replace(/^#/, '').split('?', 2);
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'requests' && parts[1] && /^req_[0-9a-z]{26}$/.test(decodeURIComponent(parts[1]))) {
    const choose = new URLSearchParams(query).get('choose');
    return { name: 'request', id: decodeURIComponent(parts[1]), choose };
  }
  if (parts[0] === 'history') return { name: 'history' };
  if (parts[0] === 'supervised') return { name: 'supervised' };
  if (parts[0] === 'metrics') return { name: 'metrics' };
  return { name: 'queue' };
}

export function requestHref(id: string): string {
  return `#/requests/${encodeURIComponent(id)}`;
}

export function navigate(hash: string): void {
  window.location.hash = hash;
}

export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}
