/**
 * Versioned migrations, one file per migration in this folder, named by its key (the keys are
 * what databases have recorded: never rename one). Applied at start by Kysely's Migrator, in key
 * order, under its lock, so several servers starting against one PostgreSQL database migrate
 * once. Append new migrations (numbers are allocated at merge); never edit a released one.
 */
import type { Migration, MigrationProvider } from 'kysely';
import { m001_initial } from './001_initial.ts';
import { m002_audit } from './002_audit.ts';
import { m002_audit_retention } from './002_audit_retention.ts';
import { m003_scheduler } from './003_scheduler.ts';
import { m004_guard } from './004_guard.ts';
import { m004_guard_allowlist } from './004_guard_allowlist.ts';
import { m005_guard_notices } from './005_guard_notices.ts';
import { m006_role_allowlist } from './006_role_allowlist.ts';
import { m007_aggregates } from './007_aggregates.ts';
import { m008_nonces_expiry } from './008_nonces_expiry.ts';
import { m009_claim } from './009_claim.ts';
import { m009_gate } from './009_gate.ts';
import { m011_witness } from './011_witness.ts';
import { m012_queue } from './012_queue.ts';
import { m010_credentials } from './010_credentials.ts';
import { m014_screen } from './014_screen.ts';
import { m015_rotation } from './015_rotation.ts';
import { m016_integrator } from './016_integrator.ts';
import { m017_agent_config } from './017_agent_config.ts';
import { m018_gatefin2 } from './018_gatefin2.ts';
import { m019_rollups } from './019_rollups.ts';
import { m021_forwarding } from './021_forwarding.ts';
import { m023_retrain } from './023_retrain.ts';
import { m024_gate12 } from './024_gate12.ts';
import { m027_webauthn } from './027_webauthn.ts';
import { m022_identity } from './022_identity.ts';

export const MIGRATIONS: Readonly<Record<string, Migration>> = Object.freeze({
  '001_initial': m001_initial,
  '002_audit': m002_audit,
  '002_audit_retention': m002_audit_retention,
  '003_scheduler': m003_scheduler,
  '004_guard': m004_guard,
  '004_guard_allowlist': m004_guard_allowlist,
  '005_guard_notices': m005_guard_notices,
  '006_role_allowlist': m006_role_allowlist,
  '007_aggregates': m007_aggregates,
  '008_nonces_expiry': m008_nonces_expiry,
  '009_claim': m009_claim,
  '009_gate': m009_gate,
  '011_witness': m011_witness,
  '012_queue': m012_queue,
  '010_credentials': m010_credentials,
  '014_screen': m014_screen,
  '015_rotation': m015_rotation,
  '016_integrator': m016_integrator,
  '017_agent_config': m017_agent_config,
  '018_gatefin2': m018_gatefin2,
  '019_rollups': m019_rollups,
  '021_forwarding': m021_forwarding,
  '022_identity': m022_identity,
  '023_retrain': m023_retrain,
  '024_gate12': m024_gate12,
  '027_webauthn': m027_webauthn,
});

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return { ...MIGRATIONS };
  },
};
