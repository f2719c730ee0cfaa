/**
 * What the MCP gating gateway adds to an auto-approved call: the same tool called directly on
 * the downstream server and through the gateway, alternately, in one run, so both see the same
 * machine load. The downstream is the test fixture (a real McpServer), reached in memory and as
 * a stdio child process; Countersign is a real `countersign serve` process (SQLite, loopback)
 * whose policy auto-approves the read.
 *
 * Through the gateway one call is: create the request (policy auto-approves; one commit),
 * check its signed receipt, re-read the downstream's tool list (the pinned definition must
 * still hold), call the tool; the execution report (a second commit) is sent after the result
 * is returned. A third column times the Countersign create alone, the floor of the gateway.
 *
 *   node --import tsx bench/mcp.ts        # BENCH_MCP_CALLS (default 300) per path and transport
 */
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Countersign } from '@countersign/client';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { Gateway, memoryPins } from '../packages/mcp/src/index.ts';
import { docsServer } from '../packages/mcp/test/fixtures/docs-server.ts';
import { startCountersign } from '../packages/mcp/test/support/countersign.ts';
import { writeSection } from './sections.ts';

const CALLS = Number(process.env.BENCH_MCP_CALLS ?? 300);
const WARMUP = 20;
const FIXTURE = fileURLToPath(new URL('../packages/mcp/test/fixtures/docs-server.ts', import.meta.url));
const PKG = fileURLToPath(new URL('../packages/mcp/', import.meta.url));

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function linked(server: { connect(t: InMemoryTransport): Promise<void> }): Promise<Client> {
  const [a, b] = InMemoryTransport.createLinkedPair();
  await server.connect(a);
  const client = new Client({ name: 'bench', version: '1' });
  await client.connect(b);
  return client;
}

async function measure(label: string, direct: Client, gated: Client, countersign: Countersign): Promise<{ direct: number[]; gated: number[]; create: number[] }> {
  const out = { direct: [] as number[], gated: [] as number[], create: [] as number[] };
  for (let i = 0; i < WARMUP + CALLS; i++) {
    const started = performance.now();
    const handle = await countersign.requestApproval({ action: 'docs__read_doc', args: { id: `alone-${label}-${i}` }, confidence: 0.95 });
    if (i >= WARMUP) out.create.push(performance.now() - started);
    if (handle.status !== 'approved') throw new Error(`the bench policy must auto-approve docs__read_doc (call ${i}: ${handle.status}, ${JSON.stringify(handle.assessment)})`);
    await handle.claim(handle.request.decision!);
    await handle.reportExecution({ status: 'succeeded' });
    for (const [which, client, name] of [
      ['direct', direct, 'read_doc'],
      ['gated', gated, 'docs__read_doc'],
    ] as const) {
      const started = performance.now();
      const result = await client.callTool({ name, arguments: { id: `doc-${label}-${i}` } });
      const ms = performance.now() - started;
      if (result.isError) throw new Error(`${which} call failed: ${JSON.stringify(result.content)}`);
      if (i >= WARMUP) out[which].push(ms);
    }
  }
  out.direct.sort((a, b) => a - b);
  out.gated.sort((a, b) => a - b);
  out.create.sort((a, b) => a - b);
  return out;
}

const cs = await startCountersign();
const rows: string[] = [];
const json: Record<string, unknown> = {};
try {
  const countersign = new Countersign({ url: cs.url, apiKey: cs.agentKey });
  const transports = {
    'in memory': async () => {
      const direct = await linked(docsServer(() => {}).server);
      const [down, up] = InMemoryTransport.createLinkedPair();
      await docsServer(() => {}).server.connect(down);
      const gateway = await Gateway.start({ countersign, servers: { docs: { transport: up, trusted: true } }, pins: memoryPins(), log: () => {} });
      return { direct, gated: await linked(gateway.createSession()), close: () => gateway.close() };
    },
    'stdio child': async () => {
      const spawnFixture = () => new StdioClientTransport({ command: process.execPath, args: ['--import', 'tsx', FIXTURE], cwd: PKG, stderr: 'ignore' });
      const direct = new Client({ name: 'bench', version: '1' });
      await direct.connect(spawnFixture());
      const gateway = await Gateway.start({
        countersign,
        servers: { docs: { command: process.execPath, args: ['--import', 'tsx', FIXTURE], cwd: PKG, env: {}, trusted: true, readOnlyConfidence: 0.95, tools: {} } },
        pins: memoryPins(),
        log: () => {},
      });
      return {
        direct,
        gated: await linked(gateway.createSession()),
        close: async () => {
          await direct.close();
          await gateway.close();
        },
      };
    },
  };
  for (const [label, make] of Object.entries(transports)) {
    const rig = await make();
    try {
      const r = await measure(label.replace(/\W/g, '-'), rig.direct, rig.gated, countersign);
      const d50 = quantile(r.direct, 0.5);
      const g50 = quantile(r.gated, 0.5);
      const c50 = quantile(r.create, 0.5);
      json[label] = { direct: { p50: d50, p90: quantile(r.direct, 0.9) }, gated: { p50: g50, p90: quantile(r.gated, 0.9) }, create: { p50: c50 } };
      rows.push(
        `| ${label} | ${d50.toFixed(2)} ms (p90 ${quantile(r.direct, 0.9).toFixed(2)}) | ${g50.toFixed(2)} ms (p90 ${quantile(r.gated, 0.9).toFixed(2)}) | +${(g50 - d50).toFixed(2)} ms | ${(g50 / d50).toFixed(1)}× | ${c50.toFixed(2)} ms |`,
      );
    } finally {
      await rig.close();
    }
  }
} finally {
  await cs.stop();
}

const machine = `${cpus()[0]?.model ?? 'unknown'} × ${cpus().length}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const section = [
  '## MCP gateway: added latency of an auto-approved call',
  '',
  `Machine: ${machine}. Command: \`node --import tsx bench/mcp.ts\` (${CALLS} calls per path after ${WARMUP} warm-up, direct and gated alternating).`,
  '',
  '| downstream | direct call, median | through the gateway, median | added | ratio | Countersign create alone, median |',
  '| --- | --- | --- | --- | --- | --- |',
  ...rows,
  '',
  'Through the gateway a call waits for one Countersign commit (the auto-approved request; SQLite',
  'with synchronous=FULL, so an fsync) over loopback HTTP, a signature check of the receipt, and one',
  'extra downstream round trip (re-reading the tool list, so a definition swapped after approval',
  'never runs); the execution report is sent after the result is returned. The last column is that',
  'create alone: most of the added time is Countersign committing the decision to disk. The ratio',
  'is large because a direct call to a local server takes about a millisecond or less; the added',
  'time, not the ratio, is what a real tool call (network, disk, an LLM) feels. The machine was',
  'shared with other jobs (load average well above its 2 cores) during the run, which inflates',
  'the fsync-bound numbers and the p90s.',
].join('\n');
writeSection('mcp', section);
console.log(section);
console.log(JSON.stringify(json));
