/** The HTTP contract, in process (`app.request`), on a real SQLite file. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/app.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { AUTO, QUEUED, openTestEngine, type TestEngine } from './support/engine.ts';

let database: TestDatabase;
let t: TestEngine;
let app: ReturnType<typeof createApp>;
let agentKey: string;
let adminToken: string;

beforeAll(async () => {
  database = sqliteDatabase();
  t = await openTestEngine(database.url);
  app = createApp({ engine: t.engine, log: () => {}, heartbeatSeconds: 1 });
  agentKey = (await t.engine.createAgentKey(t.admin, 'http-bot')).key;
  adminToken = (await t.engine.createOperator(t.admin, { name: 'http-admin', roles: ['admin', 'reviewer'] })).token;
});
afterAll(async () => {
  await t.engine.close();
  await database.drop();
});

const auth = (token: string) => ({ authorization: `Bearer ${token}` });
const jsonHeaders = (token: string) => ({ ...auth(token), 'content-type': 'application/json' });

async function post(path: string, token: string, body: unknown): Promise<Response> {
  return app.request(path, { method: 'POST', headers: jsonHeaders(token), body: typeof body === 'string' ? body : JSON.stringify(body) });
}

async function errorCode(res: Response): Promise<string> {
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(typeof body.error.message).toBe('string');
  return body.error.code;
}

async function requestCount(): Promise<number> {
  const rows = await t.engine.store.listRequests({ limit: 10_000, order: 'newest' });
  return rows.length;
}

describe('HTTP: the happy path', () => {
  it('creates (201), replays an idempotency key (200), reads back', async () => {
    const created = await post('/v1/requests', agentKey, { ...QUEUED, idempotencyKey: 'h-1' });
    expect(created.status).toBe(201);
    const request = (await created.json()) as { id: string; status: string; assessment: { route: string } };
    expect(request.status).toBe('pending');
    expect(request.assessment.route).toBe('review');
    const replay = await post('/v1/requests', agentKey, { ...QUEUED, idempotencyKey: 'h-1' });
    expect(replay.status).toBe(200);
    expect(((await replay.json()) as { id: string }).id).toBe(request.id);
    const got = await app.request(`/v1/requests/${request.id}`, { headers: auth(agentKey) });
    expect(got.status).toBe(200);
  });

  it('long-polls until decided', async () => {
    const { id } = (await (await post('/v1/requests', agentKey, QUEUED)).json()) as { id: string };
    const waiting = app.request(`/v1/requests/${id}?waitSeconds=10`, { headers: auth(agentKey) });
    await new Promise((r) => setTimeout(r, 50));
    const reviewed = await post(`/v1/requests/${id}/reviews`, adminToken, { verdict: 'approve', args: { host: 'ws-043' } });
    expect(reviewed.status).toBe(200);
    const res = await waiting;
    const body = (await res.json()) as { status: string; decision: { args: unknown; modified: boolean } };
    expect(body.status).toBe('approved');
    expect(body.decision).toMatchObject({ args: { host: 'ws-043' }, modified: true });
  });

  it('streams server-sent events: the state now, then each change, then end', async () => {
    const { id } = (await (await post('/v1/requests', agentKey, QUEUED)).json()) as { id: string };
    const res = await app.request(`/v1/requests/${id}/events`, { headers: auth(agentKey) });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    setTimeout(() => void post(`/v1/requests/${id}/reviews`, adminToken, { verdict: 'reject', reason: 'wrong host' }), 50);
    const text = await res.text(); // the stream ends after the request closes
    const states = [...text.matchAll(/event: state\ndata: (.*)\n/g)].map((m) => (JSON.parse(m[1]!) as { status: string }).status);
    expect(states).toEqual(['pending', 'rejected']);
    expect(text).toContain('event: end');
  });

  it('lets the agent report execution and cancel', async () => {
    const auto = (await (await post('/v1/requests', agentKey, AUTO)).json()) as { id: string; status: string; decision: { receipt: unknown } };
    expect(auto.status).toBe('approved');
    const claimed = await post(`/v1/requests/${auto.id}/execution`, agentKey, { status: 'started', receipt: auto.decision.receipt });
    expect(((await claimed.json()) as { status: string }).status).toBe('executing');
    const exec = await post(`/v1/requests/${auto.id}/execution`, agentKey, { status: 'succeeded', result: { ok: 1 } });
    expect(exec.status).toBe(200);
    expect(((await exec.json()) as { status: string }).status).toBe('executed');
    const queued = (await (await post('/v1/requests', agentKey, QUEUED)).json()) as { id: string };
    const cancel = await app.request(`/v1/requests/${queued.id}/cancel`, { method: 'POST', headers: auth(agentKey) });
    expect(cancel.status).toBe(200);
    expect(((await cancel.json()) as { status: string }).status).toBe('cancelled');
  });

  it('serves /healthz and an OpenAPI document generated from the schemas', async () => {
    expect((await app.request('/healthz')).status).toBe(200);
    const doc = (await (await app.request('/openapi.json')).json()) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/v1/requests', '/v1/requests/{id}', '/v1/requests/{id}/reviews']));
    const create = (doc.paths['/v1/requests'] as { post: { requestBody: { content: Record<string, { schema: { properties: Record<string, unknown> } }> } } }).post;
    expect(Object.keys(create.requestBody.content['application/json']!.schema.properties)).toEqual(
      expect.arrayContaining(['action', 'args', 'confidence', 'context', 'alternatives', 'idempotencyKey']),
    );
  });
});

describe('HTTP: auth', () => {
  it('401 without or with an unknown credential', async () => {
    const none = await app.request('/v1/requests', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(QUEUED) });
    expect(none.status).toBe(401);
    expect(await errorCode(none)).toBe('UNAUTHENTICATED');
    const wrong = await post('/v1/requests', 'csk_not-a-real-key-at-all', QUEUED);
    expect(wrong.status).toBe(401);
  });

  it('403 when an agent key tries to review or list', async () => {
    const { id } = (await (await post('/v1/requests', agentKey, QUEUED)).json()) as { id: string };
    const res = await post(`/v1/requests/${id}/reviews`, agentKey, { verdict: 'approve' });
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('FORBIDDEN');
    expect((await app.request('/v1/requests', { headers: auth(agentKey) })).status).toBe(403);
  });

  it('403 SELF_REVIEW when an operator reviews a request they created', async () => {
    const { id } = (await (await post('/v1/requests', adminToken, QUEUED)).json()) as { id: string };
    const res = await post(`/v1/requests/${id}/reviews`, adminToken, { verdict: 'approve' });
    expect(res.status).toBe(403);
    expect(await errorCode(res)).toBe('SELF_REVIEW');
  });

  it('409 for a second decision', async () => {
    const { id } = (await (await post('/v1/requests', agentKey, QUEUED)).json()) as { id: string };
    expect((await post(`/v1/requests/${id}/reviews`, adminToken, { verdict: 'approve' })).status).toBe(200);
    const again = await post(`/v1/requests/${id}/reviews`, adminToken, { verdict: 'reject', reason: 'x' });
    expect(again.status).toBe(409);
  });
});

describe('HTTP: bad input gets a 4xx with a code and writes nothing', () => {
  const cases: Array<{ name: string; send: () => Response | Promise<Response>; status: number; code: string }> = [
    { name: 'malformed JSON', send: () => post('/v1/requests', agentKey, '{"action": "block_ip",'), status: 400, code: 'BAD_JSON' },
    { name: 'wrong types', send: () => post('/v1/requests', agentKey, { action: 'block_ip', confidence: 'high' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'confidence out of range', send: () => post('/v1/requests', agentKey, { action: 'block_ip', confidence: 1.5 }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'unknown field', send: () => post('/v1/requests', agentKey, { ...QUEUED, approveYourself: true }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'unknown field in an alternative', send: () => post('/v1/requests', agentKey, { ...QUEUED, alternatives: [{ name: 'q', action: 'x', run: 'rm -rf' }] }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'missing action', send: () => post('/v1/requests', agentKey, { args: {} }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a JSON array', send: () => post('/v1/requests', agentKey, '[1,2]'), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'not JSON media type', send: () => app.request('/v1/requests', { method: 'POST', headers: { ...auth(agentKey), 'content-type': 'text/plain' }, body: 'action=block_ip' }), status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'a 2 MB body', send: () => post('/v1/requests', agentKey, { action: 'block_ip', description: 'x'.repeat(2 * 1024 * 1024) }), status: 413, code: 'BODY_TOO_LARGE' },
    { name: 'a malformed id', send: () => app.request('/v1/requests/nope', { headers: auth(agentKey) }), status: 400, code: 'BAD_ID' },
    { name: 'an unknown id', send: () => app.request('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa', { headers: auth(agentKey) }), status: 404, code: 'NOT_FOUND' },
    { name: 'review of an unknown id', send: () => post('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa/reviews', adminToken, { verdict: 'approve' }), status: 404, code: 'NOT_FOUND' },
    { name: 'reject without a reason', send: () => post('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa/reviews', adminToken, { verdict: 'reject' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a bad verdict', send: () => post('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa/reviews', adminToken, { verdict: 'maybe' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a bad query', send: () => app.request('/v1/requests?status=bogus', { headers: auth(adminToken) }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'waitSeconds too long', send: () => app.request('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa?waitSeconds=99999', { headers: auth(agentKey) }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'args nested 10,000 deep', send: () => post('/v1/requests', agentKey, `{"action":"block_ip","args":${'{"a":'.repeat(10_000)}1${'}'.repeat(10_000)}}`), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'arrays nested 200,000 deep', send: () => post('/v1/requests', agentKey, `{"action":"block_ip","args":{"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}}`), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an execution result nested 10,000 deep', send: () => post('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa/execution', agentKey, `{"status":"succeeded","result":${'['.repeat(10_000)}${']'.repeat(10_000)}}`), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a NUL in the description (PostgreSQL text cannot hold it)', send: () => post('/v1/requests', agentKey, { ...QUEUED, description: 'java\u0000script' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a NUL in a rejection reason', send: () => post('/v1/requests/req_0000000000aaaaaaaaaaaaaaaa/reviews', adminToken, { verdict: 'reject', reason: 'no\u0000' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an unknown route', send: () => app.request('/v1/nothing', { headers: auth(agentKey) }), status: 404, code: 'NOT_FOUND' },
  ];

  it.each(cases)('$name → $status $code', async ({ send, status, code }) => {
    const before = await requestCount();
    const auditBefore = (await t.engine.store.listAudit({ limit: 100_000 })).length;
    const res = await send();
    expect(res.status).toBe(status);
    expect(await errorCode(res)).toBe(code);
    expect(await requestCount()).toBe(before);
    expect((await t.engine.store.listAudit({ limit: 100_000 })).length).toBe(auditBefore);
  });

  it('names the bad field', async () => {
    const res = await post('/v1/requests', agentKey, { action: 'block_ip', confidence: 'high' });
    const body = (await res.json()) as { error: { message: string; details: { issues: Array<{ path: string }> } } };
    expect(body.error.details.issues[0]?.path).toBe('confidence');
    expect(body.error.message).toContain('confidence');
  });
});
