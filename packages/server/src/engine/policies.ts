/**
 * Policies (engine room): the active policy, validated and versioned on activation (the last
 * good one stays active when a new one is refused), and the extra checks every policy must pass.
 */
import { CountersignError, type Policy, type PolicyError } from '@countersign/core';
import { sha256Hex } from '../ids.ts';
import { SYSTEM_ACTOR } from '../audit/writer.ts';
import { validatePolicyText } from '../policy-checks.ts';
import { audit, type ActivePolicy, type House } from './house.ts';

const SYSTEM = SYSTEM_ACTOR;

export class Policies {
  private active: ActivePolicy | undefined;
  private readonly policyChecks: Array<(policy: Policy) => PolicyError[]> = [];

  constructor(private readonly h: House) {}

  /** The active policy, or undefined before the first is loaded. */
  get current(): ActivePolicy | undefined {
    return this.active;
  }

  get policy(): ActivePolicy {
    if (!this.active) throw new CountersignError('POLICY_INVALID', 'no policy is loaded');
    return this.active;
  }

  /**
   * Validates and activates a policy. An invalid one is refused whole and the last good policy
   * stays active. The same text as the newest stored version reuses its version number;
   * anything new is stored, versioned and recorded in the audit trail.
   */
  async activatePolicy(text: string, source: string): Promise<ActivePolicy> {
    const policy = this.checkPolicy(text, source);
    const hash = sha256Hex(text);
    const active = await this.h.store.transaction(async (tx) => {
      const latest = await tx.latestPolicy();
      if (latest && latest.hash === hash) return { version: latest.version, hash, source, policy };
      const version = (latest?.version ?? 0) + 1;
      const at = this.h.now();
      await tx.insertPolicy({ version, hash, source: text, loaded_at: at });
      await this.h.writer.append(tx, [audit('policy_loaded', null, SYSTEM, { version, hash, source }, at)]);
      return { version, hash, source, policy };
    });
    this.active = active;
    return active;
  }

  /** Validates a policy text as activating it would (policy-checks.ts), without activating it: the resolved policy, or POLICY_INVALID. */
  checkPolicy(text: string, source: string): Policy {
    return validatePolicyText(text, source, this.policyChecks);
  }

  /**
   * Extra validation every policy must pass before it is activated, e.g. the channel settings,
   * which belong to the server's channel adapters rather than to core. Runs on later loads only.
   */
  addPolicyCheck(check: (policy: Policy) => PolicyError[]): void {
    this.policyChecks.push(check);
  }
}
