/**
 * The commands: `serve`, `proxy` and `hook claude-code`. `registerMcpCommands(program)` adds
 * them to the main `countersign` CLI as `countersign mcp serve|proxy` and `countersign hook
 * claude-code`; `countersign-mcp` (bin/) has them at the top level.
 *
 * stdout belongs to the MCP protocol in stdio mode (and to the hook's answer), so everything
 * else goes to stderr.
 */
import type { Countersign } from '@countersign/client';
import { Command, InvalidArgumentError, Option } from 'commander';
import { exitAfterAnswer } from './hook-guard.ts';

// Every command loads what it needs when it runs: the hook starts once per tool call, so it
// must not pay for the MCP SDK, and `countersign serve` must not pay for any of this.
const load = {
  client: () => import('@countersign/client'),
  stdio: () => import('@modelcontextprotocol/sdk/server/stdio.js'),
  config: () => import('./config.ts'),
  gateway: () => import('./gateway.ts'),
  hook: () => import('./hook.ts'),
  listener: () => import('./listener.ts'),
  serve: () => import('./serve.ts'),
};

const env = () => process.env as Record<string, string | undefined>;

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) throw new InvalidArgumentError('a port number 0-65535');
  return n;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || n > 86_400) throw new InvalidArgumentError('seconds, more than 0');
  return n;
}

function fail(err: unknown): never {
  const code = (err as { code?: unknown }).code ?? 'INTERNAL';
  process.stderr.write(`countersign-mcp: ${code}: ${(err as Error).message}\n`);
  process.exit(1);
}

async function agentClient(): Promise<{ cs: Countersign; url: string; agentKey: string }> {
  const { Countersign, CountersignError } = await load.client();
  const url = env().COUNTERSIGN_URL ?? 'http://127.0.0.1:8080';
  const agentKey = env().COUNTERSIGN_AGENT_KEY ?? '';
  if (!agentKey) throw new CountersignError('UNAUTHENTICATED', 'set COUNTERSIGN_AGENT_KEY to the agent key to file requests with');
  return { cs: new Countersign({ url, apiKey: agentKey }), url, agentKey };
}

async function warnExposed(host: string): Promise<void> {
  const { isLoopback } = await load.listener();
  if (!isLoopback(host)) process.stderr.write(`countersign-mcp: listening on ${host}, not loopback: anyone who can reach it and holds the token can use it\n`);
}

function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    close().finally(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

export function addServeCommand(parent: Command): Command {
  return parent
    .command('serve')
    .description('Countersign as MCP tools (request approval, status, velocity, slicing, cool-down), over stdio or --http')
    .option('--http <port>', 'serve Streamable HTTP on this port instead of stdio (needs COUNTERSIGN_MCP_TOKEN)', port)
    .option('--host <host>', 'address to bind with --http', '127.0.0.1')
    .option('--allow-origin <origin...>', 'browser origins allowed with --http (default: none)')
    .option('--json', 'with --http, print {"url"} as JSON on stdout once listening')
    .addHelpText('after', '\nEnv: COUNTERSIGN_URL, COUNTERSIGN_AGENT_KEY (the agent key), COUNTERSIGN_TOKEN (optional operator token, role auditor, for velocity/slicing/cool-down), COUNTERSIGN_MCP_TOKEN (the --http bearer token).')
    .action(async (opts: { http?: number; host: string; allowOrigin?: string[]; json?: boolean }) => {
      try {
        const [{ cs, url, agentKey }, { createCountersignServer }, { startListener }, { listenerToken }, { StdioServerTransport }] = await Promise.all([
          agentClient(),
          load.serve(),
          load.listener(),
          load.config(),
          load.stdio(),
        ]);
        const make = () => createCountersignServer({ countersign: cs, url, agentKey, operatorToken: env().COUNTERSIGN_TOKEN || undefined });
        if (opts.http === undefined) {
          const server = make();
          await server.connect(new StdioServerTransport());
          process.stdin.on('end', () => void server.close().finally(() => process.exit(0)));
          onShutdown(() => server.close());
          return;
        }
        const listener = await startListener({ port: opts.http, host: opts.host, token: listenerToken(env()), allowedOrigins: opts.allowOrigin, session: make });
        await warnExposed(opts.host);
        if (opts.json) process.stdout.write(`${JSON.stringify({ url: listener.url })}\n`);
        else process.stderr.write(`countersign-mcp serve: ${listener.url}\n`);
        onShutdown(() => listener.close());
      } catch (err) {
        fail(err);
      }
    });
}

export function addProxyCommand(parent: Command): Command {
  return parent
    .command('proxy')
    .description('the MCP gating gateway: downstream tools as server__tool, each call run only after Countersign approves it')
    .requiredOption('--config <path>', 'gateway.yaml (downstream servers, policy hints, Countersign URL)')
    .option('--http <port>', 'serve Streamable HTTP on this port instead of stdio (needs COUNTERSIGN_MCP_TOKEN)', port)
    .option('--host <host>', 'address to bind with --http (default: listen.host from the config, else 127.0.0.1)')
    .option('--json', 'with --http, print {"url", "tools"} as JSON on stdout once listening')
    .addHelpText('after', '\nEnv: COUNTERSIGN_AGENT_KEY (required), COUNTERSIGN_URL (over the file), COUNTERSIGN_MCP_TOKEN (the --http bearer token).')
    .action(async (opts: { config: string; http?: number; host?: string; json?: boolean }) => {
      try {
        const [{ Countersign }, { loadGatewayConfig, listenerToken }, { Gateway, filePins, memoryPins }, { startListener }, { StdioServerTransport }] = await Promise.all([
          load.client(),
          load.config(),
          load.gateway(),
          load.listener(),
          load.stdio(),
        ]);
        const config = loadGatewayConfig(opts.config, env());
        // Fail before starting any downstream: a listener never runs without its token.
        const token = opts.http === undefined ? undefined : listenerToken(env(), config.listen.tokenFile);
        const cs = new Countersign({ url: config.countersignUrl, apiKey: config.agentKey, auditPublicKey: config.auditPublicKey });
        const gateway = await Gateway.start({
          countersign: cs,
          servers: config.servers,
          waitSeconds: config.waitSeconds,
          progressIntervalSeconds: config.progressIntervalSeconds,
          pins: config.pinsPath === null ? memoryPins() : filePins(config.pinsPath),
        });
        if (opts.http === undefined) {
          const server = gateway.createSession();
          await server.connect(new StdioServerTransport());
          process.stdin.on('end', () => void gateway.close().finally(() => process.exit(0)));
          onShutdown(() => gateway.close());
          return;
        }
        const host = opts.host ?? config.listen.host;
        const listener = await startListener({
          port: opts.http,
          host,
          token: token!,
          allowedOrigins: config.listen.allowedOrigins,
          session: (id) => gateway.createSession(id),
        });
        await warnExposed(host);
        if (opts.json) process.stdout.write(`${JSON.stringify({ url: listener.url, tools: gateway.tools() })}\n`);
        else process.stderr.write(`countersign-mcp proxy: ${listener.url}\n`);
        onShutdown(async () => {
          await listener.close();
          await gateway.close();
        });
      } catch (err) {
        fail(err);
      }
    });
}

export function addHookCommand(parent: Command): Command {
  const hook = parent.command('hook').description('permission hooks for coding agents');
  hook
    .command('claude-code')
    .description('Claude Code PreToolUse command hook: reads the hook JSON on stdin, answers allow / deny (or defer) on stdout')
    .addOption(new Option('--timeout <seconds>', 'answer by this time, below the hook timeout in settings.json (which the hook cannot read)').argParser(seconds).default(50))
    .addOption(new Option('--on-timeout <answer>', 'the answer at --timeout; defer lets Claude Code ask, and may run the call in permissive modes').choices(['deny', 'defer']).default('deny'))
    .addHelpText('after', '\nEnv: COUNTERSIGN_URL, COUNTERSIGN_AGENT_KEY.')
    .action(async (opts: { timeout: number; onTimeout: 'deny' | 'defer' }) => {
      let cs: Countersign;
      try {
        cs = (await agentClient()).cs;
      } catch (err) {
        // Fail closed with an answer Claude Code understands, not a crash it would treat as "no decision".
        process.stdout.write(
          `${JSON.stringify({ hookSpecificOutput: { hookEventName: 'PreToolUse', permissionDecision: 'deny', permissionDecisionReason: `Countersign hook misconfigured: ${(err as Error).message}` } })}\n`,
        );
        return exitAfterAnswer();
      }
      const { runClaudeCodeHook } = await load.hook();
      // Claude Code's clock started when it spawned us: count our start-up against --timeout.
      await runClaudeCodeHook({ countersign: cs, timeoutSeconds: opts.timeout, onTimeout: opts.onTimeout, elapsedMs: process.uptime() * 1000 });
      // Exit only once the answer (possibly a large updatedInput) has reached the pipe.
      return exitAfterAnswer();
    });
  return hook;
}

/**
 * Adds `mcp serve`, `mcp proxy` and `hook claude-code` to the main `countersign` program. The
 * main CLI should import this lazily, so `countersign serve` does not load the MCP SDK.
 */
export { isHookInvocation, runHookCli } from './hook-guard.ts';

export function registerMcpCommands(program: Command): void {
  const mcp = program.command('mcp').description('Countersign over the Model Context Protocol');
  addServeCommand(mcp);
  addProxyCommand(mcp);
  addHookCommand(program);
}

/** The standalone `countersign-mcp` program. */
export function mcpProgram(): Command {
  const program = new Command('countersign-mcp').description('Countersign where agents run: MCP server, MCP gating gateway, Claude Code hook').exitOverride();
  addServeCommand(program);
  addProxyCommand(program);
  addHookCommand(program);
  return program;
}
