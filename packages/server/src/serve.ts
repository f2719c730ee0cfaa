/**
 * `countersign serve`: open the store, load the policy, bootstrap credentials on first start,
 * listen, and run the background loops. Shuts down cleanly on SIGINT/SIGTERM; SIGHUP reloads
 * the policy (a bad file is refused and the last good policy stays).
 */
import { readFileSync } from 'node:fs';
import { serve as listen, type ServerType } from '@hono/node-server';
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import type { ServerConfig } from './config.ts';
import { Engine } from './engine/engine.ts';
import { startCheckpointer } from './audit/checkpointer.ts';
import { ephemeralAuditKey, loadOrCreateAuditKey } from './audit/crypto.ts';
import { Scheduler } from './scheduler/scheduler.ts';
import { channelPolicyCheck } from './channels/config.ts';
import { Notifier } from './channels/notifier.ts';
import { ChannelRegistry } from './channels/registry.ts';
import { recordDelivery, recordEscalation } from './http/metrics.ts';
import { createApp } from './http/app.ts';
import { connect } from './store/connect.ts';

export interface RunningServer {
  engine: Engine;
  url: string;
  port: number;
  bootstrap: Awaited<ReturnType<Engine['bootstrap']>>;
  reloadPolicy(): Promise<{ ok: boolean; message: string }>;
  close(): Promise<void>;
}

export function readPolicySource(config: Pick<ServerConfig, 'policyPath'>): { text: string; source: string } {
  if (config.policyPath === null) return { text: DEFAULT_POLICY_YAML, source: 'built-in default' };
  return { text: readFileSync(config.policyPath, 'utf8'), source: config.policyPath };
}

export async function startServer(config: ServerConfig, log: (line: string) => void = console.log): Promise<RunningServer> {
  const auditKey = config.audit.keyPath === null ? ephemeralAuditKey() : loadOrCreateAuditKey(config.audit.keyPath);
  const connection = await connect(config.databaseUrl);
  const engine = await Engine.open({ connection, auditKey });
  engine.addPolicyCheck(channelPolicyCheck(process.env));
  engine.trail.setRedactedFields(config.audit.redactFields);
  try {
    await engine.trail.checkKey();
    const { text, source } = readPolicySource(config);
    await engine.activatePolicy(text, source);
  } catch (err) {
    await engine.close();
    throw err;
  }
  const bootstrap = await engine.bootstrap({ adminToken: config.adminToken, agentKey: config.agentKey });
  const channels = new ChannelRegistry(engine);
  const app = createApp({ engine, channels, session: { secret: config.sessionSecret, trustProxy: config.trustProxy } });

  const server: ServerType = await new Promise((resolve, reject) => {
    const s = listen({ fetch: app.fetch, hostname: config.host, port: config.port }, () => resolve(s));
    s.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;

  const scheduler = new Scheduler(engine, {
    intervalMs: config.tickMs,
    leaseMs: config.timerLeaseMs,
    deliver: new Notifier(engine, channels, { reviewBase: config.publicUrl ?? url, onAttempt: recordDelivery }).deliver,
    onEscalated: () => recordEscalation('sla_timeout'),
    onError: (err) => log(`countersign: scheduler: ${(err as Error).message}`),
  });
  scheduler.start();
  const checkpointer = startCheckpointer(engine, config.audit, {
    onError: (err) => log(`countersign: audit checkpoint failed: ${(err as Error).message}`),
  });

  return {
    engine,
    url,
    port,
    bootstrap,
    async reloadPolicy() {
      try {
        const { text, source } = readPolicySource(config);
        const active = await engine.activatePolicy(text, source);
        return { ok: true, message: `policy v${active.version} active (${active.source})` };
      } catch (err) {
        return { ok: false, message: `policy reload refused, keeping v${engine.policy.version}: ${(err as Error).message}` };
      }
    },
    async close() {
      await scheduler.stop();
      await channels.close();
      await checkpointer.stop();
      if ('closeAllConnections' in server) server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await engine.close();
    },
  };
}
