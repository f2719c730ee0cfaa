/**
 * Red-team review of WebAuthn step-up (issue 20), the functional core. Each test here fails on
 * branch `webauthn` and names a defect (see the review report, F-numbers in the test names).
 */
import { describe, expect, it } from 'vitest';
import { adminChangeAssessment, overlayBaselines, parsePolicy, policyForAgent, validateAgentConfig, withAgentOverlay, type Policy } from '../src/policy/index.ts';
import { payloadRequirement } from '../src/gate/requirements.ts';

function policyOf(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

describe('review: WebAuthn in the core', () => {
  it('F4: a four-eyes admin change at a `high: mfa: webauthn` policy requires WebAuthn (adminChangeAssessment keeps webauthnRequired)', () => {
    const policy = policyOf('levels:\n  high: { sla: 15m, autoApprove: false, mfa: webauthn, approvals: 1 }\n');
    expect(policy.levels.high).toMatchObject({ mfa: true, webauthn: true });
    const a = adminChangeAssessment(policy, [{ key: 'levels.high.mfa', before: true, after: false, why: 'drops step-up MFA at high risk' }], new Date('2026-12-03T12:00:00Z'), []);
    expect(a.mfaRequired).toBe(true);
    // The level says a TOTP code is refused; the admin change (which loosens the gate!) must say so too.
    expect(a.webauthnRequired).toBe(true);
    expect(payloadRequirement(a, null, false).webauthn).toBe(true);
  });

  it('F5: a loosening overlay (`mfa: false`, approved against `mfa: true`) stops applying once the file tightens the level to `mfa: webauthn`', () => {
    const before = policyOf('levels:\n  critical: { sla: 5m, autoApprove: false, mfa: true, approvals: 1 }\n');
    const drop = validateAgentConfig('bot', { levels: { critical: { mfa: false } } });
    if (!drop.ok) throw new Error('invalid overlay');
    const baselines = overlayBaselines(before, 'bot', drop.config);
    expect(baselines).toEqual({ 'levels.critical.mfa': true });
    // While the file keeps its baseline, the approved loosening applies (by design).
    expect(policyForAgent(withAgentOverlay(before, 'bot', drop.config, baselines), 'bot').levels.critical.mfa).toBe(false);
    // The file is then tightened (a reviewed change) to WebAuthn only: stricter than the baseline.
    const after = policyOf('levels:\n  critical: { sla: 5m, autoApprove: false, mfa: webauthn, approvals: 1 }\n');
    const applied = policyForAgent(withAgentOverlay(after, 'bot', drop.config, baselines), 'bot').levels.critical;
    // overlay.ts promises "a later tightening of the file always shows through"; flatOf reads only the boolean.
    expect(applied).toMatchObject({ mfa: true, webauthn: true });
  });
});
