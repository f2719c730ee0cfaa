/**
 * Connections to downstream MCP servers: a stdio child process, a Streamable HTTP URL, or any
 * SDK `Transport` (tests pass an in-memory one). The gateway only ever talks to a downstream
 * through `Client` from the official SDK.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { ServerConfig } from './config.ts';

/** A downstream as the gateway is given it: from the config file, or a ready transport. */
export type DownstreamSource = ServerConfig | { transport: Transport; trusted?: boolean; readOnlyConfidence?: number; tools?: ServerConfig['tools'] };

export const GATEWAY_INFO = { name: 'countersign-mcp-gateway', version: '0.1.0' } as const;

export async function connectDownstream(name: string, source: DownstreamSource, onStderr?: (line: string) => void): Promise<Client> {
  let transport: Transport;
  if ('transport' in source) {
    transport = source.transport;
  } else if ('command' in source) {
    const stdio = new StdioClientTransport({
      command: source.command,
      args: source.args,
      // The child gets only what the config gives it, plus PATH-like basics: never the gateway's
      // Countersign key or listener token.
      env: { ...safeEnv(), ...source.env },
      ...(source.cwd ? { cwd: source.cwd } : {}),
      stderr: 'pipe',
    });
    stdio.stderr?.on('data', (chunk: Buffer) => onStderr?.(`[${name}] ${chunk.toString().trimEnd()}`));
    transport = stdio;
  } else {
    transport = new StreamableHTTPClientTransport(new URL(source.url), { requestInit: { headers: source.headers } });
  }
  const client = new Client(GATEWAY_INFO, { capabilities: {} });
  await client.connect(transport);
  return client;
}

/** The environment a stdio child inherits: the variables a program needs to start, nothing secret. */
function safeEnv(): Record<string, string> {
  const keep = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TMPDIR', 'TEMP', 'TMP', 'SYSTEMROOT', 'USERPROFILE', 'APPDATA', 'NODE_OPTIONS'];
  const out: Record<string, string> = {};
  for (const key of keep) {
    const v = process.env[key];
    if (v !== undefined) out[key] = v;
  }
  return out;
}
