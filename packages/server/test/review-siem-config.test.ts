/**
 * Red-team review of SIEM forwarding (issue 20): settings the server accepts at start although it
 * can never forward with them. The README promises "a wrong value stops the server at start with a
 * message naming the variable"; these start, and then fail every send forever.
 *
 * Each test here fails on the reviewed branch and passes once the defect is fixed.
 */
import { describe, expect, it } from 'vitest';
import { CountersignError } from '@countersign/core';
import { resolveForwardingConfig, type HttpDestination } from '../src/forwarding/config.ts';
import { HttpSender } from '../src/forwarding/senders.ts';

function refusal(env: Record<string, string>): CountersignError | undefined {
  try {
    resolveForwardingConfig(env, '/');
    return undefined;
  } catch (err) {
    if (err instanceof CountersignError) return err;
    throw err;
  }
}

describe('review: forwarding settings are checked at start', () => {
  it('refuses an HTTP token no header can carry (a line break, a non-Latin-1 character), naming COUNTERSIGN_FORWARD_HTTP_TOKEN', async () => {
    for (const token of ['abc\r\nX-Injected: 1', 'tok\nen', 'tökën-€']) {
      const env = { COUNTERSIGN_FORWARD_HTTP_URL: 'https://127.0.0.1:9/ingest', COUNTERSIGN_FORWARD_HTTP_TOKEN: token };
      // Evidence that the setting is unusable: every POST made with it throws before it is sent.
      let accepted: HttpDestination | undefined;
      try {
        accepted = resolveForwardingConfig(env, '/').destinations[0] as HttpDestination;
      } catch {
        // refused: what the fix does
      }
      if (accepted) await expect(new HttpSender(accepted).send(Buffer.from('{}\n'), { first: 1, last: 1 })).rejects.toThrow(/invalid character|header/i);
      const err = refusal(env);
      expect(err?.code).toBe('VALIDATION_FAILED');
      expect(err?.message).toContain('COUNTERSIGN_FORWARD_HTTP_TOKEN');
    }
  });

  it('refuses port 0, which no receiver can listen on, naming the variable', () => {
    const envs: Array<Record<string, string>> = [{ COUNTERSIGN_FORWARD_SYSLOG_URL: 'tcp://127.0.0.1:0' }, { COUNTERSIGN_FORWARD_SYSLOG_URL: 'tls://siem.example:0' }, { COUNTERSIGN_FORWARD_HTTP_URL: 'https://siem.example:0/ingest' }];
    for (const env of envs) {
      const err = refusal(env);
      expect(err?.code, JSON.stringify(env)).toBe('VALIDATION_FAILED');
      expect(err?.message).toContain(Object.keys(env)[0]);
    }
  });
});
