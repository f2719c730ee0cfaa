/**
 * Long-lived responses end with their credential (issue 13): an event stream or a long-poll asks
 * every `STREAM_RECHECK_MS` whether the session or token that opened it still holds (through the
 * engine's 2 s credential cache, so a revocation on another server ends it within about 3 s) and
 * is aborted the moment it does not. A check the database cannot answer ends nothing by itself;
 * what is sent is re-checked at the moment of sending (a refusal or an error there: nothing sent).
 *
 *   const stop = watchCredential(grantsHeld(c.get('principalNow'), principal), () => aborted.abort());
 *   try { …stream… } finally { stop(); }
 */
import { sameGrants, type Principal } from '../engine/principal.ts';
import { STREAM_RECHECK_MS } from './session.ts';

/**
 * For an event stream: whether the credential that opened it still holds *with the grants it had*
 * (roles, groups). A stream ends on a role change too, so what it shows (whether the operator may
 * act on a request) is never computed for roles they no longer hold; the client reconnects and
 * reads afresh. Long-polls answer the same to any role and keep `stillAuthorized`.
 */
export function grantsHeld(principalNow: () => Promise<Principal | undefined>, opened: Principal): () => Promise<boolean> {
  return async () => sameGrants(opened, await principalNow());
}

export function watchCredential(stillAuthorized: () => Promise<boolean>, onLost: () => void, everyMs = STREAM_RECHECK_MS): () => void {
  let stopped = false;
  let checking = false;
  const timer = setInterval(() => {
    if (stopped || checking) return;
    checking = true;
    stillAuthorized()
      .then((ok) => {
        if (!ok && !stopped) {
          stopped = true;
          clearInterval(timer);
          onLost();
        }
      })
      .catch(() => {
        // The database did not answer: that is an outage, not a revocation, so the wait goes on
        // (a waiting agent still hears a decision made as the database comes back). Nothing is
        // sent on it meanwhile: every write and the long-poll's answer re-check first, and that
        // check fails closed.
      })
      .finally(() => {
        checking = false;
      });
  }, everyMs);
  timer.unref?.();
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
