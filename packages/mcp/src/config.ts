/**
 * The gateway's config file (gateway.yaml) → one frozen, validated config. Precedence: CLI flag >
 * COUNTERSIGN_* env > file > default. Secrets never come from the file: the Countersign agent key
 * is COUNTERSIGN_AGENT_KEY, the HTTP listener's bearer token COUNTERSIGN_MCP_TOKEN (or a file
 * named by `listen.tokenFile`), so a config can be committed.
 */
import { readFileSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { CountersignError } from '@countersign/core';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { SERVER_NAME } from './plan.ts';

const Hints = z.strictObject({
  riskLevel: z.enum(['low', 'medium', 'high', 'critical']).optional(),
  confidence: z.number().min(0).max(1).optional(),
  description: z.string().max(2_000).optional(),
});

const Common = {
  /** Whether this server's annotations may feed the policy (a confidence for read-only tools). */
  trusted: z.boolean().default(false),
  readOnlyConfidence: z.number().min(0).max(1).default(0.95),
  /** Per-tool hints for Countersign's policy, by the downstream tool's own name. */
  tools: z.record(z.string(), Hints).default({}),
};

const StdioServer = z.strictObject({
  command: z.string().min(1),
  args: z.array(z.string()).default([]),
  env: z.record(z.string(), z.string()).default({}),
  cwd: z.string().optional(),
  ...Common,
});

const HttpServer = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  /** Header values may name an environment variable as `${NAME}`, so tokens stay out of the file. */
  headers: z.record(z.string(), z.string()).default({}),
  ...Common,
});

const Listen = z.strictObject({
  host: z.string().default('127.0.0.1'),
  /** Browser origins allowed to call the listener; requests with any other Origin are refused. */
  allowedOrigins: z.array(z.string()).default([]),
  tokenFile: z.string().optional(),
});

export const GatewayConfigFile = z.strictObject({
  countersign: z
    .strictObject({
      url: z.url({ protocol: /^https?$/ }).optional(),
      /**
       * The audit public key receipts are checked against: PEM text, a file, or its key id
       * (COUNTERSIGN_AUDIT_PUBLIC_KEY wins). Without it the gateway trusts the key the server
       * serves on first use, and says so.
       */
      auditPublicKey: z.string().min(1).optional(),
    })
    .default({}),
  gateway: z
    .strictObject({
      /** Longest wait inside one tools/call before answering "pending"; keep it below the client's timeout (60 s by default). */
      waitSeconds: z.number().int().min(1).max(3_600).default(50),
      /** How often a waiting call sends a progress notification (when the caller gave a progress token). */
      progressIntervalSeconds: z.number().min(0.2).max(60).default(5),
      /**
       * Where pinned tool-definition hashes are kept (JSON), relative to this file. By default
       * `<this file's name>.pins.json` beside it, so a restart never re-pins whatever a downstream
       * lists then; `false` keeps pins in memory only (every start trusts on first use again).
       */
      pins: z.union([z.string().min(1), z.literal(false)]).optional(),
    })
    .default({ waitSeconds: 50, progressIntervalSeconds: 5 }),
  listen: Listen.default({ host: '127.0.0.1', allowedOrigins: [] }),
  servers: z
    .record(z.string().regex(SERVER_NAME, 'a server name is a letter, then letters, digits or -, at most 32, no __'), z.union([StdioServer, HttpServer]))
    .refine((servers) => Object.keys(servers).length > 0, 'name at least one downstream server'),
});

export type StdioServerConfig = z.output<typeof StdioServer>;
export type HttpServerConfig = z.output<typeof HttpServer>;
export type ServerConfig = StdioServerConfig | HttpServerConfig;
export type ListenConfig = z.output<typeof Listen>;

export interface GatewayConfig {
  countersignUrl: string;
  agentKey: string;
  waitSeconds: number;
  progressIntervalSeconds: number;
  /** Null: pins in memory only (`gateway.pins: false`). */
  pinsPath: string | null;
  auditPublicKey: string | undefined;
  listen: ListenConfig;
  servers: Readonly<Record<string, ServerConfig>>;
}

/**
 * Parses and validates gateway YAML text; `baseDir` resolves relative paths (pins, cwd), and
 * `configName` (the file's own name) names the default pins file. Throws VALIDATION_FAILED naming the key.
 */
export function parseGatewayConfig(text: string, env: Record<string, string | undefined>, baseDir: string, configName = 'gateway.yaml'): GatewayConfig {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `gateway config is not valid YAML: ${(err as Error).message}`);
  }
  const parsed = GatewayConfigFile.safeParse(raw ?? {});
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`);
    throw new CountersignError('VALIDATION_FAILED', `gateway config: ${issues.join('; ')}`, { issues });
  }
  const file = parsed.data;
  const agentKey = env.COUNTERSIGN_AGENT_KEY ?? '';
  if (!agentKey) throw new CountersignError('UNAUTHENTICATED', 'set COUNTERSIGN_AGENT_KEY to the agent key the gateway files requests with');
  const servers: Record<string, ServerConfig> = {};
  for (const [name, server] of Object.entries(file.servers)) {
    if ('command' in server) servers[name] = Object.freeze({ ...server, ...(server.cwd ? { cwd: resolve(baseDir, server.cwd) } : {}) });
    else servers[name] = Object.freeze({ ...server, headers: expandHeaders(server.headers, env, name) });
  }
  return Object.freeze({
    countersignUrl: env.COUNTERSIGN_URL ?? file.countersign.url ?? 'http://127.0.0.1:8080',
    agentKey,
    waitSeconds: file.gateway.waitSeconds,
    progressIntervalSeconds: file.gateway.progressIntervalSeconds,
    pinsPath: file.gateway.pins === false ? null : resolve(baseDir, file.gateway.pins ?? `${configName.replace(/\.ya?ml$/i, '')}.pins.json`),
    auditPublicKey: env.COUNTERSIGN_AUDIT_PUBLIC_KEY ?? file.countersign.auditPublicKey,
    listen: Object.freeze({ ...file.listen, ...(file.listen.tokenFile ? { tokenFile: resolve(baseDir, file.listen.tokenFile) } : {}) }),
    servers: Object.freeze(servers),
  });
}

export function loadGatewayConfig(path: string, env: Record<string, string | undefined> = process.env): GatewayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CountersignError('VALIDATION_FAILED', `cannot read gateway config ${path}: ${(err as Error).message}`);
  }
  return parseGatewayConfig(text, env, dirname(resolve(path)), basename(path));
}

function expandHeaders(headers: Record<string, string>, env: Record<string, string | undefined>, server: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers)) {
    out[key] = value.replace(/\$\{([A-Z0-9_]{1,64})\}/g, (_, name: string) => {
      const v = env[name];
      if (v === undefined) throw new CountersignError('VALIDATION_FAILED', `servers.${server}.headers.${key} names \${${name}}, which is not set`);
      return v;
    });
  }
  return out;
}

/**
 * The bearer token an `--http` listener requires: COUNTERSIGN_MCP_TOKEN, else the file. At
 * least 24 characters; a listener never starts without one (fail closed).
 */
export function listenerToken(env: Record<string, string | undefined>, tokenFile?: string): string {
  let token = env.COUNTERSIGN_MCP_TOKEN ?? '';
  if (!token && tokenFile) token = readFileSync(tokenFile, 'utf8').trim();
  if (token.length < 24) {
    throw new CountersignError(
      'UNAUTHENTICATED',
      'an --http listener needs a bearer token of at least 24 characters: set COUNTERSIGN_MCP_TOKEN (e.g. `openssl rand -hex 32`)',
    );
  }
  return token;
}
