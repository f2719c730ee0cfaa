/**
 * The one composition root. `serve` (serve.ts) and the embedded gateway (embedded.ts) both build
 * the server here, from one frozen config (config.ts), so they cannot drift apart: the same
 * audit key handling, encryption keys, reviewer limits, redacted audit fields, channel secrets,
 * scheduler and checkpointer. What differs is only what each puts in front: an HTTP listener,
 * or an `AgentGateway` in the agent's process.
 *
 *   const runtime = await openRuntime(resolveServerConfig(flags), { policy: readPolicySource(config) });
 *   runtime.start({ reviewBase: 'https://countersign.example' });   // scheduler + checkpointer
 *   await runtime.close();
 *
 * Order matters and is kept here once: the audit key and the server secret are loaded before the engine opens (a server
 * whose key did not sign the trail's newest checkpoint refuses to start), the policy is activated
 * before anything can read it, and on close the loops stop before the store does.
 */
import { relyingPartyOf } from './guard/webauthn.ts';
import { adoptOnUpgrade } from './audit/adopt.ts';
import { keepOrigin } from './audit/keys.ts';
import { startCheckpointer, type Checkpointer } from './audit/checkpointer.ts';
import { existsSync } from 'node:fs';
import type { AuditConfig } from './audit/config.ts';
import { ephemeralAuditKey, loadOrCreateAuditKey, type AuditKey } from './audit/crypto.ts';
import { trailPublisher } from './audit/publish.ts';
import { Notifier } from './channels/notifier.ts';
import { ChannelRegistry } from './channels/registry.ts';
import { ServiceNowPoller } from './channels/tickets.ts';
import type { RuntimeConfig } from './config.ts';
import { Engine, openStore, type EscalationCause } from './engine/engine.ts';
import { PrecheckCaller } from './precheck/caller.ts';
import { Forwarder } from './forwarding/forwarder.ts';
import type { ResolvedIdentity } from './config.ts';
import { OidcClient } from './identity/oidc.ts';
import { Provisioning } from './identity/provisioning.ts';
import { serverPolicyChecks } from './policy-checks.ts';
import { Scheduler } from './scheduler/scheduler.ts';
import { connect, type Connection } from './store/connect.ts';
import { Store } from './store/store.ts';
import { ephemeralServerSecret, loadOrCreateServerSecret } from './keys/server-secret.ts';

export interface PolicySource {
  text: string;
  source: string;
}

export interface RuntimeOptions {
  /** The policy to activate at start. */
  policy: PolicySource;
  /** Background errors (scheduler, checkpoints) and notices; never thrown. `level` is error unless given (`serve` routes these to its JSON logger, log.ts). */
  log?: ((line: string, level?: 'debug' | 'info' | 'warn' | 'error') => void) | undefined;
  /** Single sign-on and SCIM (`serve` only; config.ts `resolveIdentityConfig`). */
  identity?: ResolvedIdentity | null | undefined;
  /** Metric hooks (`serve` counts deliveries and escalations for Prometheus; embedded mode has no /metrics). */
  metrics?: {
    onDelivery?: (channel: string, result: 'delivered' | 'retrying' | 'gave_up' | 'failed') => void;
    /** Each committed escalation with its cause (`sla_timeout`, `manual`), told by the engine where it commits. */
    onEscalated?: (reason: EscalationCause) => void;
  } | undefined;
}

export interface Runtime {
  readonly config: RuntimeConfig;
  readonly engine: Engine;
  readonly channels: ChannelRegistry;
  /** The identity provider's parts when configured: the SCIM/SSO provisioning room and the OIDC relying party. */
  readonly identity: { readonly provisioning: Provisioning; readonly oidc: OidcClient | null; readonly scim: boolean } | null;
  /** Starts the scheduler and the checkpointer; `reviewBase` is where notification links point. */
  start(options: { reviewBase: string }): void;
  /** Stops the background loops (the checkpointer signs a last checkpoint); the store stays open. */
  stop(): Promise<void>;
  /** `stop`, then closes the channels and the store. Safe to call twice. */
  close(): Promise<void>;
}

export async function openRuntime(config: RuntimeConfig, options: RuntimeOptions): Promise<Runtime> {
  const log = options.log ?? ((line: string) => console.error(line));
  const legacy = config.audit.keyPath !== null && config.audit.legacyKeyPath !== null && !existsSync(config.audit.keyPath) && existsSync(config.audit.legacyKeyPath);
  let auditKey = config.audit.keyPath === null ? ephemeralAuditKey() : legacy ? undefined : loadOrCreateAuditKey(config.audit.keyPath);
  // Beside the audit key, 0600, made on first start: credential MACs and the TOTP seed key (keys/server-secret.ts).
  const serverSecret = config.serverSecretPath === null ? ephemeralServerSecret() : loadOrCreateServerSecret(config.serverSecretPath);
  const connection = await connect(config.databaseUrl);
  if (connection.migrations.newer.length > 0) {
    log(`countersign: this database was migrated by a newer release (${connection.migrations.newer.join(', ')}); this server runs beside it until it is upgraded too`);
  }
  if (auditKey === undefined) {
    // An installation from before per-database key files: keep using the shared file only if it
    // signed this database's trail; otherwise this database gets its own file.
    try {
      auditKey = await legacyOrOwnKey(config.audit, connection, log);
    } catch (err) {
      await connection.destroy();
      throw err;
    }
  }
  // Integration failures (retried on the next wake or poll) reach the log: once per cause, and
  // again each minute while it lasts, so a stalled trail is visible without flooding the log.
  let lastIntegrationError = { message: '', at: 0 };
  const onStoreError = (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    const now = Date.now();
    if (message === lastIntegrationError.message && now - lastIntegrationError.at < 60_000) return;
    lastIntegrationError = { message, at: now };
    log(`countersign: audit integration failed (retrying): ${message}`);
  };
  // The store is opened here and handed to the engine, so that this root wires the trail's publisher and origin to it without reaching through the engine.
  const store = openStore({ connection, guard: config.guard, onStoreError });
  const engine = await Engine.open({ store, auditKey, guard: config.guard, serverSecret, onStoreError, prechecks: new PrecheckCaller({ env: config.env }) });
  if (options.metrics?.onEscalated) engine.onEscalated(options.metrics.onEscalated);
  for (const check of serverPolicyChecks(config.env)) engine.addPolicyCheck(check);
  engine.trail.setRedactedFields(config.audit.redactFields);
  // What the signer signs goes to the witnesses; what it refuses to sign, to every channel.
  engine.trail.signer.setHooks(
    trailPublisher({
      store,
      key: auditKey,
      policy: () => {
        try {
          return engine.policy.policy;
        } catch {
          return undefined; // no policy yet: nothing to notify
        }
      },
      witnessDir: config.audit.witnessDir,
      now: () => engine.clock(),
      log,
    }),
  );
  try {
    await engine.trail.checkKey();
    // The deployment's own checkpoint origin, kept from the first start (finding 12).
    await keepOrigin(store.auditKeys, config.audit.origin, engine.clock());
    // Once, on the first start after the upgrade that introduced the signer's state file.
    await adoptOnUpgrade(engine, store, { witnessDir: config.audit.witnessDir, log });
    await engine.activatePolicy(options.policy.text, options.policy.source);
  } catch (err) {
    await engine.close();
    throw err;
  }
  const channels = new ChannelRegistry(engine, config.env);
  const resolved = options.identity ?? null;
  const identity = resolved
    ? {
        provisioning: new Provisioning(store, engine.credentials, engine.writer, resolved.settings, () => engine.clock()),
        oidc: resolved.settings.oidc ? new OidcClient(resolved.settings.oidc, resolved.clientSecret) : null,
        scim: resolved.settings.scim?.enabled === true,
      }
    : null;
  let scheduler: Scheduler | undefined;
  let checkpointer: Checkpointer | undefined;
  let poller: ServiceNowPoller | undefined;
  let forwarder: Forwarder | undefined;
  let stopped: Promise<void> | undefined;
  let closed: Promise<void> | undefined;

  const stop = () =>
    (stopped ??= (async () => {
      await scheduler?.stop();
      await poller?.stop();
      await checkpointer?.stop();
      await engine.screenModels.stop();
      await forwarder?.stop();
    })());

  return {
    config,
    engine,
    channels,
    identity,
    start({ reviewBase }) {
      // WebAuthn's relying party: where people reach the dashboard (guard/webauthn.ts relyingPartyOf).
      const rp = relyingPartyOf(reviewBase);
      engine.guard.webauthn.useRelyingParty(rp);
      // An IP address other than loopback cannot be a relying party id: said once here, and by every WebAuthn call.
      if (rp.unusable) log(`countersign: ${rp.unusable}`, 'warn');
      if (scheduler) return;
      scheduler = new Scheduler(engine, {
        intervalMs: config.tickMs,
        leaseMs: config.timerLeaseMs,
        deliver: new Notifier(engine, channels, { reviewBase, ...(options.metrics?.onDelivery ? { onAttempt: options.metrics.onDelivery } : {}) }).deliver,
        onError: (err) => log(`countersign: scheduler: ${(err as Error).message}`),
      });
      scheduler.start();
      // ServiceNow channels with `poll:` follow their tickets' state by sys_updated_on (channels/tickets.ts).
      poller = new ServiceNowPoller(engine, channels, (err) => log(`countersign: servicenow poll: ${(err as Error).message}`));
      poller.start();
      checkpointer = startCheckpointer(engine, config.audit, {
        onError: (err) => log(`countersign: audit checkpoint failed: ${(err as Error).message}`),
      });
      // The screening model: re-read what another server adopted, and retrain when screening.retrain.every is due.
      engine.screenModels.start({
        onError: (err) => log(`countersign: screening retrain: ${(err as Error).message}`),
        onOutcome: (o) => log(`countersign: screening retrain ${o.outcome}: ${o.reason}`, 'info'),
      });
      // SIEM forwarding reads the integrated trail after each destination's cursor (forwarding/).
      if (config.forward.destinations.length > 0) {
        forwarder = new Forwarder(store, (data) => engine.trail.redact(data), config.forward, { log });
        forwarder.start();
      }
    },
    stop,
    close() {
      closed ??= stop()
        .then(() => channels.close())
        .then(() => engine.close());
      return closed;
    },
  };
}

async function legacyOrOwnKey(audit: AuditConfig, connection: Connection, log: (line: string, level?: 'warn') => void): Promise<AuditKey> {
  const legacy = loadOrCreateAuditKey(audit.legacyKeyPath!);
  // A throwaway store on the runtime's connection: its integrator is stopped at once (the
  // connection is the engine's, so it is not closed here).
  const store = new Store(connection, undefined, { pollMs: 3_600_000 });
  const latest = await store.trail.latestCheckpoint().finally(() => store.integrator.stop());
  if (latest?.keyId === legacy.keyId) {
    log(`countersign: this database's trail is signed by ${audit.legacyKeyPath}, the key file PostgreSQL installations used to share; move it to ${audit.keyPath} (or set COUNTERSIGN_AUDIT_KEY_PATH) so no other installation picks it up`, 'warn');
    return legacy;
  }
  return loadOrCreateAuditKey(audit.keyPath!);
}
