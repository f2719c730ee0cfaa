/**
 * `countersign-mcp proxy --config gateway.yaml` as a user runs it: the real process, in front of
 * a stdio downstream (the fixture server), reached by an MCP client over stdio and over
 * Streamable HTTP (authenticated, Origin-checked, loopback).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pending, review, startCountersign, type TestCountersign } from './support/countersign.ts';

const BIN = fileURLToPath(new URL('../bin/countersign-mcp.js', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./fixtures/docs-server.ts', import.meta.url));
const PKG = fileURLToPath(new URL('..', import.meta.url));
const TOKEN = 'proxy-listener-token-0123456789abcdef';

let cs: TestCountersign;
let dir: string;
let configPath: string;
let env: Record<string, string>;

beforeAll(async () => {
  cs = await startCountersign();
  dir = mkdtempSync(join(tmpdir(), 'cs-mcp-proxy-'));
  configPath = join(dir, 'gateway.yaml');
  writeFileSync(
    configPath,
    `
countersign: { url: ${cs.url} }
gateway: { waitSeconds: 20, pins: ./pins.json }
servers:
  docs:
    command: ${JSON.stringify(process.execPath)}
    args: [--import, tsx, ${JSON.stringify(FIXTURE)}]
    cwd: ${JSON.stringify(PKG)}
    env: { DOCS_CALL_LOG: ${JSON.stringify(join(dir, 'calls.jsonl'))} }
    trusted: true
`,
  );
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('COUNTERSIGN_') && v !== undefined) clean[k] = v;
  env = { ...clean, COUNTERSIGN_AGENT_KEY: cs.agentKey, COUNTERSIGN_MCP_TOKEN: TOKEN };
}, 60_000);

afterAll(async () => {
  await cs?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const calls = () =>
  readFileSync(join(dir, 'calls.jsonl'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { tool: string; args: Record<string, unknown> });
const text = (r: CallToolResult) => (r.content ?? []).map((c) => (c.type === 'text' ? c.text : '')).join('');

describe('proxy over stdio', () => {
  it('lists the namespaced tools and runs an auto-approved read', async () => {
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [BIN, 'proxy', '--config', configPath], env, stderr: 'pipe' }));
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(['docs__delete_doc', 'docs__read_doc']);
      const result = (await client.callTool({ name: 'docs__read_doc', arguments: { id: 'stdio-1' } })) as CallToolResult;
      expect(text(result)).toBe('contents of stdio-1');
      expect(calls().filter((c) => c.args.id === 'stdio-1')).toHaveLength(1);
      const pins = JSON.parse(readFileSync(join(dir, 'pins.json'), 'utf8')) as { pins: Record<string, string> };
      expect(Object.keys(pins.pins).sort()).toEqual(['docs__delete_doc', 'docs__read_doc']);
    } finally {
      await client.close();
    }
  });
});

describe('proxy --http', () => {
  let child: ChildProcess;
  let url: string;

  beforeAll(async () => {
    child = spawn(process.execPath, [BIN, 'proxy', '--config', configPath, '--http', '0', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    const info = JSON.parse(line) as { url: string; tools: Array<{ name: string; state: string }> };
    url = info.url;
    expect(info.tools.every((t) => t.state === 'listed')).toBe(true);
  }, 60_000);
  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });

  const status = (headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const target = new URL(url);
      const req = httpRequest(
        { host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }));
    });

  it('binds loopback and refuses no token, a wrong token, a foreign Origin and a foreign Host', async () => {
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(await status({})).toBe(401);
    expect(await status({ authorization: 'Bearer not-the-token-not-the-token' })).toBe(401);
    expect(await status({ authorization: `Bearer ${TOKEN}`, origin: 'http://attacker.example' })).toBe(403);
    expect(await status({ authorization: `Bearer ${TOKEN}`, host: 'attacker.example' })).toBe(403);
  });

  it('gates a destructive call until it is approved, then runs it once', async () => {
    const client = new Client({ name: 'agent', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    try {
      const running = client.callTool({ name: 'docs__delete_doc', arguments: { id: 'http-1' } }) as Promise<CallToolResult>;
      const [request] = await pending(cs, 'docs__delete_doc', (r) => r.args.id === 'http-1', 1, 30_000);
      expect(calls().filter((c) => c.args.id === 'http-1')).toHaveLength(0);
      await review(cs, request!.id, { verdict: 'approve' });
      expect(text(await running)).toBe('deleted http-1');
      expect(calls().filter((c) => c.args.id === 'http-1')).toHaveLength(1);
    } finally {
      await client.close();
    }
  });

  it('refuses to start a listener without a token', async () => {
    const { COUNTERSIGN_MCP_TOKEN: _omit, ...noToken } = env;
    const bad = spawn(process.execPath, [BIN, 'proxy', '--config', configPath, '--http', '0'], { env: noToken, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    bad.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const [code] = (await once(bad, 'exit')) as [number];
    expect(code).toBe(1);
    expect(stderr).toContain('COUNTERSIGN_MCP_TOKEN');
  });
});
