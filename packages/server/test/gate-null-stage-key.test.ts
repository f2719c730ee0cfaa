/**
 * Votes recorded before migration 009_gate have a NULL `reviews.stage_key` (the column is added
 * without a backfill: the stage a vote was cast for cannot be known from the row alone once the
 * policy may have changed). They are treated fail-closed: such a vote counts towards no stage, so
 * the stage is signed again, by someone else (one vote per person per request stays, as the
 * `reviews_one_vote` constraint says). On both databases, with the row made as an upgrade leaves it.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CreateRequestBody } from '@countersign/core';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';

const POLICY = `
rules:
  - name: two-reviewers
    when: { action: [rotate_keys] }
    then: { approvals: 2 }
  - name: lead-then-director
    when: { action: [pay_vendor] }
    then: { approvers: [{ role: lead }, { role: director }] }
`;

describe.each(ENGINES)('pre-009 votes with no stage key count towards no stage ($name)', ({ make }) => {
  let database: TestDatabase;
  let t: TestEngine;
  let n = 0;
  let db: never;
  const create = (body: Record<string, unknown>) => t.engine.createRequest(t.agent, CreateRequestBody.parse({ confidence: 0.9, ...body, idempotencyKey: `k${n++}` }));
  const idOf = (p: Awaited<ReturnType<TestEngine['operator']>>) => (p.kind === 'operator' ? p.operatorId : p.agentId);
  const approve = async (by: Awaited<ReturnType<TestEngine['operator']>>, id: string) => {
    const read = await t.engine.getRequest(by, id);
    return t.engine.review(by, id, { verdict: 'approve', seenPayloadHash: read.payload!.payloadHash });
  };
  /** What migration 009_gate leaves on a vote cast before it: stage_key NULL. */
  const asBeforeUpgrade = (id: string) => sql`update reviews set stage_key = null where request_id = ${id}`.execute(db);

  beforeAll(async () => {
    database = make();
    t = await openTestEngine(database.url, POLICY);
    db = (t.engine.store as unknown as { db: never }).db;
  });
  afterAll(async () => {
    await t.engine.close();
    await database.drop();
  });

  it('a quorum of two: the old vote does not count, a second reviewer does not approve alone, a third does', async () => {
    const [a, b, c] = [await t.operator(`a${n++}`), await t.operator(`b${n++}`), await t.operator(`c${n++}`)];
    const { request } = await create({ action: 'rotate_keys', args: { keyring: 'prod' } });
    expect((await approve(a, request.id)).status).toBe('pending');
    await asBeforeUpgrade(request.id);
    // Control: with the key in place b's vote would have approved it (checked on a twin below).
    expect((await approve(b, request.id)).status).toBe('pending');
    // The old voter is still one person who voted: they cannot vote again.
    await expect(approve(a, request.id)).rejects.toMatchObject({ code: 'ALREADY_REVIEWED' });
    expect((await approve(c, request.id)).status).toBe('approved');
    const decided = await t.engine.getRequest(t.admin, request.id);
    expect(decided.decision?.deciders.map((d) => d.id).sort()).toEqual([idOf(b), idOf(c)].sort());
  });

  it('the twin without the upgrade: the same two votes approve (so the test above can fail)', async () => {
    const [a, b] = [await t.operator(`a${n++}`), await t.operator(`b${n++}`)];
    const { request } = await create({ action: 'rotate_keys', args: { keyring: 'stage' } });
    expect((await approve(a, request.id)).status).toBe('pending');
    expect((await approve(b, request.id)).status).toBe('approved');
  });

  it('staged approvers: an old lead vote leaves the lead stage open, and the reader sees that stage as the one waited on', async () => {
    const lead = await t.operator(`lead${n++}`, ['lead']);
    const lead2 = await t.operator(`lead${n++}`, ['lead']);
    const director = await t.operator(`dir${n++}`, ['director']);
    const { request } = await create({ action: 'pay_vendor', args: { vendor: 'acme' } });
    expect((await approve(lead, request.id)).status).toBe('pending');
    await asBeforeUpgrade(request.id);
    // A lead may still sign stage 1 (the one waited on), which they could not if the old vote counted.
    const read = await t.engine.getRequest(lead2, request.id);
    expect(read.actionable).toBe(true);
    expect((await approve(lead2, request.id)).status).toBe('pending');
    expect((await approve(director, request.id)).status).toBe('approved');
    const decided = await t.engine.getRequest(t.admin, request.id);
    expect(decided.decision?.deciders.map((d) => d.id)).toEqual([idOf(lead2), idOf(director)]);
  });
});
