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
      const { engine, url, bootstrap } = server;
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

function printBootstrap(url: string, b: { adminToken: string; agentKey: string }): void {
  const lines = [
    '',
    'First start: created an admin operator and a demo-agent key. They are shown ONCE; keep them.',
    `  admin token (operator):  ${b.adminToken}`,
    `  demo-agent API key:      ${b.agentKey}`,
    '',
    'Try it:',
    `  curl -s ${url}/v1/requests -H 'Authorization: Bearer ${b.agentKey}' \\`,
    `    -H 'content-type: application/json' \\`,
    `    -d '{"action":"isolate_host","args":{"host":"ws-042"},"confidence":0.82}'`,
    `  COUNTERSIGN_TOKEN=${b.adminToken} npx countersign status`,
    '',
  ];
  console.log(lines.join('\n'));
}
