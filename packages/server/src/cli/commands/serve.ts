import type { Command } from 'commander';
import { resolveServerConfig } from '../../config.ts';

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('run the Countersign server (HTTP API, engine, background loops)')
    .option('--database <url>', 'sqlite:PATH, sqlite::memory: or postgres://… (env COUNTERSIGN_DATABASE_URL)')
    .option('--host <host>', 'listen address (env COUNTERSIGN_HOST)')
    .option('--port <port>', 'listen port (env COUNTERSIGN_PORT)')
    .option('--policy <path>', 'policy file (env COUNTERSIGN_POLICY; default ./countersign.yaml if present)')
    .option('--audit-key <path>', 'Ed25519 key that signs the audit trail, created if missing (env COUNTERSIGN_AUDIT_KEY_PATH; default next to the SQLite file)')
    .option('--json', 'print startup information as one JSON line')
    .action(async (flags: { database?: string; host?: string; port?: string; policy?: string; auditKey?: string; json?: boolean }) => {
      const config = resolveServerConfig(flags);
      // Loaded here so client commands do not pay for the server stack at start-up.
      const { startServer } = await import('../../serve.ts');
      const server = await startServer(config);
      const { engine, url } = server;
      const bootstrap = printable(server.bootstrap);
      const policy = engine.policy;
      if (flags.json) {
        console.log(JSON.stringify({ url, database: engine.store.capabilities.dialect, policyVersion: policy.version, policySource: policy.source, auditKeyId: engine.trail.key.keyId, bootstrap }));
      } else {
        console.log(`Countersign listening on ${url}`);
        console.log(`  database: ${redactUrl(config.databaseUrl)}`);
        console.log(`  policy:   v${policy.version} (${policy.source})`);
        console.log(`  audit key: ${engine.trail.key.keyId} (${engine.trail.key.path ?? 'in memory only'})`);
        if (bootstrap) printBootstrap(url, bootstrap);
      }
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        console.error(`countersign: ${signal}, shutting down`);
        server.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => {
        void server.reloadPolicy().then((r) => console.error(`countersign: ${r.message}`));
      });
    });
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]+)@/, '//$1:***@');
}

/**
 * What bootstrap may print: the secrets it generated, never those the environment supplied
 * (COUNTERSIGN_ADMIN_TOKEN / COUNTERSIGN_AGENT_KEY): the operator already has them, and printing
 * them puts them in every log that captures stdout (issue 13, point 7).
 */
function printable(b: { adminToken: string; agentKey: string; operatorId: string; agentId: string; given: { adminToken: boolean; agentKey: boolean } } | null) {
  if (!b) return null;
  return {
    adminToken: b.given.adminToken ? null : b.adminToken,
    operatorId: b.operatorId,
    agentKey: b.given.agentKey ? null : b.agentKey,
    agentId: b.agentId,
  };
}

function printBootstrap(url: string, b: { adminToken: string | null; agentKey: string | null }): void {
  const admin = b.adminToken ?? '(from COUNTERSIGN_ADMIN_TOKEN, not shown)';
  const agent = b.agentKey ?? '(from COUNTERSIGN_AGENT_KEY, not shown)';
  const lines = [
    '',
    'First start: created an admin operator and a demo-agent key. Generated secrets are shown ONCE; keep them.',
    `  admin token (operator):  ${admin}`,
    `  demo-agent API key:      ${agent}`,
    '',
    'Try it:',
    `  curl -s ${url}/v1/requests -H 'Authorization: Bearer ${b.agentKey ?? '$COUNTERSIGN_AGENT_KEY'}' \\`,
    `    -H 'content-type: application/json' \\`,
    `    -d '{"action":"isolate_host","args":{"host":"ws-042"},"confidence":0.82}'`,
    `  COUNTERSIGN_TOKEN=${b.adminToken ?? '$COUNTERSIGN_ADMIN_TOKEN'} npx countersign status`,
    '',
  ];
  console.log(lines.join('\n'));
}
