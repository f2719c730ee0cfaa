/**
 * Issue 11.4: agent-side code sends an agent key. COUNTERSIGN_AGENT_KEY first, a csk_ key left
 * in COUNTERSIGN_TOKEN still works, and an operator token (cso_) is refused with a message that
 * says what to use, wherever it came from. The environment is passed in, never read.
 */
import { describe, expect, it } from 'vitest';
import { Countersign, CountersignError, HttpGateway } from '../src/index.ts';
import { resolveAgentKey } from '../src/credentials.ts';

const AGENT = 'csk_agentagentagentagentagentagentagentagent';
const OPERATOR = 'cso_operatoroperatoroperatoroperatoroperator';

function refusal(run: () => unknown): CountersignError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(CountersignError);
    return err as CountersignError;
  }
  throw new Error('expected a CountersignError');
}

describe('the agent credential', () => {
  it('reads COUNTERSIGN_AGENT_KEY, and a csk_ key from COUNTERSIGN_TOKEN for compatibility', () => {
    expect(resolveAgentKey(undefined, { COUNTERSIGN_AGENT_KEY: AGENT })).toBe(AGENT);
    expect(resolveAgentKey(undefined, { COUNTERSIGN_TOKEN: AGENT })).toBe(AGENT);
    // The agent key wins over whatever the CLI's variable holds.
    expect(resolveAgentKey(undefined, { COUNTERSIGN_AGENT_KEY: AGENT, COUNTERSIGN_TOKEN: OPERATOR })).toBe(AGENT);
    // An explicit key wins over the environment.
    expect(resolveAgentKey('csk_explicit', { COUNTERSIGN_AGENT_KEY: AGENT })).toBe('csk_explicit');
  });

  it('refuses an operator token passed explicitly or found in either variable, naming the fix', () => {
    for (const [explicit, env, where] of [
      [OPERATOR, {}, /the apiKey passed/],
      [undefined, { COUNTERSIGN_AGENT_KEY: OPERATOR }, /COUNTERSIGN_AGENT_KEY is an operator token/],
      [undefined, { COUNTERSIGN_TOKEN: OPERATOR }, /COUNTERSIGN_TOKEN \(the CLI's operator token\)/],
    ] as const) {
      const err = refusal(() => resolveAgentKey(explicit, env));
      expect(err.code).toBe('UNAUTHENTICATED');
      expect(err.message).toMatch(where);
      expect(err.message).toMatch(/must use an agent key \(csk_…\).*COUNTERSIGN_AGENT_KEY/);
      expect(err.message).not.toContain(OPERATOR); // the secret itself is never echoed
    }
  });

  it('says what to set when there is no agent key at all', () => {
    const err = refusal(() => resolveAgentKey(undefined, { COUNTERSIGN_TOKEN: 'something-else' }));
    expect(err.code).toBe('UNAUTHENTICATED');
    expect(err.message).toMatch(/no agent key: pass apiKey or set COUNTERSIGN_AGENT_KEY/);
  });

  it('new Countersign() applies the rules before anything is sent', () => {
    const cs = new Countersign({ url: 'http://127.0.0.1:9', env: { COUNTERSIGN_AGENT_KEY: AGENT } });
    expect(cs.gateway).toBeInstanceOf(HttpGateway);
    const fromUrlEnv = new Countersign({ env: { COUNTERSIGN_URL: 'https://cs.example/', COUNTERSIGN_TOKEN: AGENT } });
    expect((fromUrlEnv.gateway as HttpGateway).url).toBe('https://cs.example');
    expect(refusal(() => new Countersign({ url: 'http://127.0.0.1:9', apiKey: OPERATOR, env: {} })).code).toBe('UNAUTHENTICATED');
    expect(refusal(() => new Countersign({ env: { COUNTERSIGN_TOKEN: OPERATOR } })).message).toMatch(/agent key/);
    expect(refusal(() => new Countersign({ env: {} })).message).toMatch(/no agent key/);
  });
});
