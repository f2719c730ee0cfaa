/**
 * Issue 13, point 1: one agent request must not freeze the server. The real `countersign serve`
 * runs as its own process (so a stalled event loop there cannot stall this test's clock), and an
 * agent sends, through create, the worst text we know for each built-in content pattern, for a
 * policy content pattern that backtracks exponentially in V8, and for the default target globs,
 * each as large as the 1 MiB body limit allows. While each create runs, `/healthz` is polled.
 *
 * The bounds are generous (a loaded 2-core machine): each create within 15 s, and no health check
 * waits more than 5 s. On the backtracking matcher the JWT pattern alone took ~38 s on 256 KiB and
 * `*.prod.*` ~14 s on 400 KB, and `^(a|a)+$` never returns: those runs fail here.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { startServerProcess, type ServerProcess } from './support/server-process.ts';

const BODY_LIMIT = 1024 * 1024;
const CREATE_BOUND_MS = 15_000;
const HEALTH_BOUND_MS = 5_000;

/** Every built-in pattern in use (the defaults use only three), and one of the policy's own. */
const POLICY = `
contentPatterns:
  nested: "^(a|a)+$"
rules:
  - { name: p-card, when: { contentPattern: credit_card }, then: { riskAtLeast: high } }
  - { name: p-ssn, when: { contentPattern: us_ssn }, then: { riskAtLeast: high } }
  - { name: p-secret, when: { contentPattern: secret }, then: { riskAtLeast: high } }
  - { name: p-email, when: { contentPattern: email }, then: { riskAtLeast: medium } }
  - { name: p-ip, when: { contentPattern: ip_address }, then: { riskAtLeast: medium } }
  - { name: p-nested, when: { contentPattern: nested }, then: { riskAtLeast: medium } }
`;

/** `unit` repeated to fill `chars`. */
const fill = (unit: string, chars: number): string => unit.repeat(Math.ceil(chars / unit.length)).slice(0, chars);

/** Room for the JSON around one big string value, so the body stays just under the limit. */
const BIG = BODY_LIMIT - 512;

const CASES: ReadonlyArray<{ name: string; args: Record<string, unknown> }> = [
  { name: 'secret: JWT shape, -eyJ repeated', args: { notes: fill('-eyJ', BIG) } },
  { name: 'secret: JWT with dots, eyJaaaaaaaa. repeated', args: { notes: fill('eyJaaaaaaaa.', BIG) } },
  { name: 'secret: PEM header words', args: { notes: `-----BEGIN ${fill('A ', BIG - 20)}` } },
  { name: 'secret: password= runs', args: { notes: fill('password=', BIG) } },
  { name: 'credit_card: spaced digits', args: { notes: fill('1 ', BIG) } },
  { name: 'us_ssn: partial numbers', args: { notes: fill('123-45-', BIG) } },
  { name: 'email: dotted domains', args: { notes: `a@${fill('a.', BIG - 10)}` } },
  { name: 'ip_address: dotted digits and colons', args: { notes: fill('1.1:', BIG) } },
  { name: 'policy pattern ^(a|a)+$: a run of a then b', args: { notes: `${fill('a', BIG - 2)}b` } },
  // A final '/' stops both stars: the backtracking regex then tried every split (~375 s at 1 MiB).
  { name: 'glob *.prod.*: args.path', args: { path: `${fill('.prod', BIG - 1)}/` } },
  { name: 'glob prod.*: args.path', args: { path: fill('prod.', BIG) } },
  { name: 'glob prod-*, dc-*: args.host', args: { host: fill('prod-', BIG) } },
];

let database: TestDatabase;
let dir: string;
let server: ServerProcess;
let agentKey: string;

beforeAll(async () => {
  database = sqliteDatabase();
  dir = mkdtempSync(join(tmpdir(), 'countersign-pathological-'));
  const policyPath = join(dir, 'policy.yaml');
  writeFileSync(policyPath, POLICY);
  server = await startServerProcess(database.url, { COUNTERSIGN_POLICY: policyPath });
  agentKey = server.bootstrap!.agentKey;
}, 60_000);

afterAll(async () => {
  await server?.kill();
  await database?.drop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls `/healthz` one request at a time until `stop` resolves; returns the slowest answer (ms). */
async function pollHealth(url: string, stop: Promise<unknown>): Promise<number> {
  let done = false;
  void stop.finally(() => (done = true));
  let slowest = 0;
  while (!done) {
    const start = performance.now();
    const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(CREATE_BOUND_MS) }).catch(() => null);
    slowest = Math.max(slowest, performance.now() - start);
    if (!res) return Number.POSITIVE_INFINITY;
    await res.arrayBuffer();
    await new Promise((r) => setTimeout(r, 20));
  }
  return slowest;
}

describe('pathological agent text through create', () => {
  it.each(CASES)('$name: the create completes and the server keeps answering', async ({ args }) => {
    const body = JSON.stringify({ action: 'update_record', args, description: 'pathological input test' });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(BODY_LIMIT);
    expect(Buffer.byteLength(body)).toBeGreaterThan(BODY_LIMIT - 1024);
    const start = performance.now();
    const create = fetch(`${server.url}/v1/requests`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' },
      body,
      signal: AbortSignal.timeout(CREATE_BOUND_MS),
    });
    const slowestHealth = pollHealth(server.url, create.catch(() => null));
    const res = await create;
    const took = performance.now() - start;
    expect(res.status).toBe(201);
    const created = (await res.json()) as { id: string; status: string };
    expect(created.id).toMatch(/^req_/);
    expect(took).toBeLessThan(CREATE_BOUND_MS);
    expect(await slowestHealth).toBeLessThan(HEALTH_BOUND_MS);
  }, CREATE_BOUND_MS * 2);
});
