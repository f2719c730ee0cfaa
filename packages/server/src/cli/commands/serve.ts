import { relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { errorDetailLines } from '../format.ts';

/** The command's own script, and the clone it belongs to (where `npx countersign` finds it). */
const BIN = fileURLToPath(new URL('../../../bin/countersign.js', import.meta.url));
const CLONE = resolve(BIN, '../../../..');

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
      // Loaded here so client commands do not pay for the server stack (or the domain) at start-up.
      const [{ resolveServerConfig }, { startServer }] = await Promise.all([import('../../config.ts'), import('../../serve.ts')]);
      const config = resolveServerConfig(flags);
      // Log lines are JSON on stdout (log.ts, COUNTERSIGN_LOG_LEVEL); the startup summary and the
      // first-start banner below stay as they were, printed apart from that stream.
      const server = await startServer(config);
      const { engine, url } = server;
      const bootstrap = printable(server.bootstrap);
      // Handlers first, then the pid: a HUP sent the moment the pid is printed must reload, not
      // meet the default disposition (which ends the process).
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) return;
        stopping = true;
        server.log(`${signal}, shutting down`, 'info');
        server.close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGINT', () => stop('SIGINT'));
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGHUP', () => {
        void server.reloadPolicy().then((r) => server.log(`${r.message}${errorDetailLines(r.details)}`, r.ok ? 'info' : 'error'));
      });
      const policy = engine.policy;
      if (flags.json) {
        console.log(JSON.stringify({ url, database: engine.databaseDialect, policyVersion: policy.version, policySource: policy.source, auditKeyId: engine.trail.key.keyId, bootstrap }));
      } else {
        console.log(`Countersign listening on ${url}`);
        console.log(`  database: ${redactUrl(config.databaseUrl)}`);
        console.log(`  policy:   v${policy.version} (${policy.source})`);
        console.log(`  audit key: ${engine.trail.key.keyId} (${engine.trail.key.path ?? 'in memory only'})`);
        console.log(`  pid:      ${process.pid} (reload the policy: kill -HUP ${process.pid})`);
        if (bootstrap) console.log(firstStartHint(url, bootstrap, cliCommand(process.cwd()), cliCommand('/')));
      }
      // npm cannot pass SIGHUP on (it forwards only INT and TERM) and dies of it, which would
      // leave this server running with nobody's terminal. Under `npm start`, stop when npm is gone.
      if (config.underNpm) {
        const parent = process.ppid;
        setInterval(() => {
          if (process.ppid !== parent) stop('the npm process that started this server exited');
        }, 1000).unref();
      }
    });
}

/**
 * How to run the CLI from where the server was started: `npx countersign` inside the clone (npm
 * finds the workspace's command), else the script's own path, which works from anywhere.
 */
export function cliCommand(cwd: string, clone = CLONE, bin = BIN): string {
  const rel = relative(clone, cwd);
  const inside = rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && !/^[A-Za-z]:/.test(rel));
  return inside ? 'npx countersign' : `node ${/^[\w./@:+-]+$/.test(bin) ? bin : `'${bin.replace(/'/g, `'\\''`)}'`}`;
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]+)@/, '//$1:***@');
}

/**
 * What bootstrap may print: the secrets it generated, never those the environment supplied
 * (COUNTERSIGN_ADMIN_TOKEN / COUNTERSIGN_AGENT_KEY): the operator already has them, and printing
 * them puts them in every log that captures stdout (issue 13, point 7).
 */
export function printable(b: { adminToken: string; agentKey: string; operatorId: string; agentId: string; given: { adminToken: boolean; agentKey: boolean } } | null) {
  if (!b) return null;
  return {
    adminToken: b.given.adminToken ? null : b.adminToken,
    operatorId: b.operatorId,
    agentKey: b.given.agentKey ? null : b.agentKey,
    agentId: b.agentId,
  };
}

/**
 * What the first start prints: the generated secrets, once, and lines that work as printed on
 * this port. A secret the environment supplied is `null` here and is named by its variable only.
 */
export function firstStartHint(url: string, b: { adminToken: string | null; agentKey: string | null }, cli: string, anywhere = cli): string {
  return [
    '',
    'First start: created an admin operator and a demo-agent key. Generated secrets are shown ONCE; keep them.',
    `  admin token (operator):  ${b.adminToken ?? '(from COUNTERSIGN_ADMIN_TOKEN, not shown)'}`,
    `  demo-agent API key:      ${b.agentKey ?? '(from COUNTERSIGN_AGENT_KEY, not shown)'}`,
    '',
    'Try it (in another terminal):',
    `  export COUNTERSIGN_URL=${url}`,
    `  export COUNTERSIGN_TOKEN=${b.adminToken ?? '"$COUNTERSIGN_ADMIN_TOKEN"'}`,
    `  export COUNTERSIGN_AGENT_KEY=${b.agentKey ?? '"$COUNTERSIGN_AGENT_KEY"'}`,
    `  curl -s $COUNTERSIGN_URL/v1/requests -H "Authorization: Bearer $COUNTERSIGN_AGENT_KEY" \\`,
    `    -H 'content-type: application/json' \\`,
    `    -d '{"action":"isolate_host","args":{"host":"ws-042"},"confidence":0.82}'`,
    `  ${cli} status${cli === anywhere ? '' : `        # inside the clone; from anywhere: ${anywhere} status`}`,
    '',
  ].join('\n');
}
