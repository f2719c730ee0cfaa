/**
 * `countersign serve`: the runtime (runtime.ts) behind an HTTP listener. Bootstraps credentials
 * on first start, listens, then starts the background loops. Shuts down cleanly on
 * SIGINT/SIGTERM; SIGHUP reloads the policy (a bad file is refused and the last good policy stays).
 */
import { existsSync, readFileSync } from 'node:fs';
import type { ServerType } from '@hono/node-server';
import { DEFAULT_POLICY_YAML, applyPolicyOverrides, type ApprovalRequest } from '@countersign/core';
import type { ServerConfig } from './config.ts';
import type { Engine } from './engine/engine.ts';
import { recordDelivery, recordEscalation } from './http/metrics.ts';
import { createApp } from './http/app.ts';
import { startListener } from './http/listener.ts';
import { createLogger, lineLogger, routingFields, type LineLevel, type ServerLogger } from './log.ts';
import { openRuntime, type PolicySource } from './runtime.ts';

export interface RunningServer {
  engine: Engine;
  url: string;
  port: number;
  bootstrap: Awaited<ReturnType<Engine['bootstrap']>>;
  /** Where this server's log lines go (the JSON logger unless the caller passed its own `log`). */
  log: (line: string, level?: LineLevel) => void;
  /** Re-reads the policy file (SIGHUP). A refusal carries every wrong key, as at startup. */
  reloadPolicy(): Promise<{ ok: boolean; message: string; details?: unknown }>;
  close(): Promise<void>;
}

/**
 * The policy to activate: the file named at start, else `./countersign.yaml` of the start
 * directory once it exists (so a reload picks up a file created after start), else the default;
 * with the policy settings the environment sets written over it (config.ts `policyOverrides`),
 * so the stored version is the policy that runs.
 */
export function readPolicySource(config: Pick<ServerConfig, 'policyPath'> & Partial<Pick<ServerConfig, 'policyFallback' | 'policyOverrides'>>): PolicySource {
  const path = config.policyPath ?? (config.policyFallback && existsSync(config.policyFallback) ? config.policyFallback : null);
  const file = path === null ? { text: DEFAULT_POLICY_YAML, source: 'built-in default' } : { text: readFileSync(path, 'utf8'), source: path };
  const overrides = config.policyOverrides ?? [];
  if (overrides.length === 0) return file;
  return { text: applyPolicyOverrides(file.text, overrides), source: `${file.source} + env ${overrides.map((o) => o.variable).join(', ')}` };
}

/**
 * `log`: a function for the server's log lines (tests pass their own), or the JSON logger;
 * default a logger made from `config.logging` (log.ts), writing to stdout.
 */
export async function startServer(config: ServerConfig, log?: ((line: string, level?: LineLevel) => void) | ServerLogger): Promise<RunningServer> {
  const logger: ServerLogger | undefined = typeof log === 'function' ? undefined : (log ?? createLogger(config.logging));
  const line = logger ? lineLogger(logger) : (log as (line: string, level?: LineLevel) => void);
  // COUNTERSIGN_DEBUG=1: one line per create saying why it went where it went, ids only (log.ts routingFields).
  const routed = config.logging.debug
    ? (request: ApprovalRequest) => (logger ? logger.debug(routingFields(request), 'routed') : line(`routed ${JSON.stringify(routingFields(request))}`, 'debug'))
    : undefined;
  const runtime = await openRuntime(config, {
    policy: readPolicySource(config),
    identity: config.identity,
    log: line,
    metrics: { onDelivery: recordDelivery, onEscalated: recordEscalation },
  });
  const { engine, channels } = runtime;
  const bootstrap = await engine.bootstrap({ adminToken: config.adminToken, agentKey: config.agentKey });
  const { transport } = config;
  const app = createApp({
    engine,
    channels,
    identity: runtime.identity,
    session: { secret: config.sessionSecret, trustProxy: config.trustProxy },
    maxBodyBytes: transport.maxBodyBytes,
    waits: { perPrincipal: transport.waitsPerPrincipal, total: transport.waitsTotal },
    forwarding: config.forward.destinations,
    log: line,
    ...(config.publicUrl ? { reviewBase: config.publicUrl } : {}),
    ...(routed ? { onCreated: routed } : {}),
  });

  let server: ServerType;
  try {
    server = await startListener({ fetch: app.fetch, host: config.host, port: config.port, transport });
  } catch (err) {
    await runtime.close(); // the port is taken: nothing started, so close the store too
    throw err;
  }
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const url = `http://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
  runtime.start({ reviewBase: config.publicUrl ?? url });

  return {
    engine,
    url,
    port,
    bootstrap,
    log: line,
    async reloadPolicy() {
      try {
        const { text, source } = readPolicySource(config);
        const active = await engine.activatePolicy(text, source);
        return { ok: true, message: `policy v${active.version} active (${active.source})` };
      } catch (err) {
        const details = (err as { details?: unknown }).details;
        return { ok: false, message: `policy reload refused, keeping v${engine.policy.version}: ${(err as Error).message}`, ...(details === undefined ? {} : { details }) };
      }
    },
    async close() {
      await runtime.stop();
      if ('closeAllConnections' in server) server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await runtime.close();
    },
  };
}
