/**
 * The closed lists of names the contract uses, as plain arrays with no dependencies. schemas.ts
 * builds its enums from them (and re-exports them); they live here so that a caller needing
 * only a list (the CLI's option choices, at start-up) can import `@countersign/core/constants`
 * without loading zod and the rest of the domain.
 */

export const RISK_LEVELS = ['low', 'medium', 'high', 'critical'] as const;

export const AUTOMATION_LEVELS = ['full', 'supervised', 'advisory', 'manual'] as const;

export const REQUEST_STATUSES = [
  'pending',
  'approved',
  /** An approval claimed for execution (`POST …/execution {status: started, receipt}`); the result report closes it. */
  'executing',
  'rejected',
  'expired',
  'cancelled',
  'executed',
  'execution_failed',
  /** An approval never claimed before its claim deadline, swept by the scheduler (final: it can never run; its idempotency key files anew). */
  'lapsed',
] as const;

export const ROLES = ['reviewer', 'lead', 'manager', 'director', 'auditor', 'admin'] as const;

export const BLAST_SCOPES = ['single', 'host', 'team', 'department', 'organization', 'global'] as const;

/** The regulations a compliance report can map its sections to (audit/compliance.ts). */
export const REGULATIONS = ['SOC2', 'ISO27001', 'GDPR', 'HIPAA', 'PCI-DSS'] as const;
