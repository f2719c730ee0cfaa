/**
 * One store suite, both engines. Anything the engine relies on about storage is asserted here
 * against real SQLite files and the real PostgreSQL server.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, sql } from '../src/store/connect.ts';
import { Store, type RequestRow } from '../src/store/store.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { requestFactColumns } from '../src/store/history.ts';

function requestRow(id: string, overrides: Partial<RequestRow> = {}): RequestRow {
  return {
    id,
    agent_id: 'agt_1',
    requester_operator_id: null,
    idempotency_key: null,
    body_hash: 'h',
    action: 'block_ip',
    args: '{"ip":"203.0.113.7"}',
    description: null,
    confidence: 0.9,
    risk_hint: null,
    context: '{}',
    alternatives: '[]',
    approvers: '[]',
    timeout_seconds: null,
    status: 'pending',
    risk_score: 0.4,
    risk_level: 'medium',
    automation_level: 'advisory',
    route: 'review',
    assessment: '{"approval":null}',
    policy_version: 1,
    decision: null,
    execution: null,
    created_at: 1_000,
    updated_at: 1_000,
    decided_at: null,
    expires_at: null,
    queue_due_at: 8_640_000_000_000_000,
    action_key: overrides.action ?? 'block_ip',
    claim_nonce: null,
    claim_expires_at: null,
    claimed_at: null,
    ...overrides,
  };
}

describe.each(ENGINES)('store conformance: $name', ({ make }) => {
  let database: TestDatabase;
  let store: Store;

  beforeAll(async () => {
    database = make();
    store = new Store(await connect(database.url));
    await store.insertAgent({ id: 'agt_1', name: 'agent-one', created_at: 1 });
    await store.insertAgent({ id: 'agt_2', name: 'agent-two', created_at: 2 });
  });

  afterAll(async () => {
    await store.close();
    await database.drop();
  });

  it('applies migrations once; a second connect finds nothing to do', async () => {
    const again = await connect(database.url);
    expect(again.migrations.applied).toEqual([]);
    await again.destroy();
  });

  it('sweeps expired nonces by an index on expires_at (migration 008), and a claim still works', async () => {
    const conn = await connect(database.url);
    try {
      const indexes =
        database.name === 'sqlite'
          ? (await sql<{ name: string }>`select name from sqlite_master where type = 'index' and tbl_name = 'nonces'`.execute(conn.db)).rows
          : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'nonces' and schemaname = current_schema()`.execute(conn.db)).rows;
      expect(indexes.map((r) => r.name)).toContain('nonces_expires_at');
    } finally {
      await conn.destroy();
    }
    expect(await store.timers.claimNonce('n:1', 2_000, 1_000)).toBe(true);
    expect(await store.timers.claimNonce('n:1', 2_000, 1_500)).toBe(false);
    expect(await store.timers.nonceHeld('n:1', 1_999)).toBe(true);
    expect(await store.timers.nonceHeld('n:1', 2_000)).toBe(false);
    expect(await store.timers.claimNonce('n:1', 9_000, 2_500)).toBe(true); // expired: swept and claimable again
  });

  it('round-trips a request row exactly, numbers as numbers', async () => {
    const row = requestRow('req_roundtrip', { created_at: 1_700_000_000_123, expires_at: 1_700_000_900_000 });
    await store.insertRequest(row);
    // The row as written, with the fact columns the store derives from it on insert (019_rollups).
    expect(await store.getRequest('req_roundtrip')).toEqual({ ...row, ...requestFactColumns(row) });
    expect(await store.getRequest('req_missing')).toBeUndefined();
  });

  it('reads back exactly what later inserts of the same shape wrote (SQL compiled once per shape)', async () => {
    const rows = [1, 2, 3].map((i) => requestRow(`req_shape${i}`, { created_at: 2_000_000 + i, description: `d${i}`, confidence: i / 10, expires_at: i === 2 ? null : 9_000 + i }));
    for (const row of rows) await store.insertRequest(row);
    for (const row of rows) expect(await store.getRequest(row.id)).toEqual({ ...row, ...requestFactColumns(row) });
  });

  it('enforces one idempotency key per agent, and allows the same key for another agent', async () => {
    await store.insertRequest(requestRow('req_idem1', { idempotency_key: 'k1' }));
    await expect(store.insertRequest(requestRow('req_idem2', { idempotency_key: 'k1' }))).rejects.toThrow();
    await store.insertRequest(requestRow('req_idem3', { idempotency_key: 'k1', agent_id: 'agt_2' }));
    expect((await store.findByIdempotencyKey('agt_1', 'k1'))?.id).toBe('req_idem1');
    expect((await store.findByIdempotencyKey('agt_2', 'k1'))?.id).toBe('req_idem3');
    // NULL keys never collide.
    await store.insertRequest(requestRow('req_nokey1'));
    await store.insertRequest(requestRow('req_nokey2'));
  });

  it('claims an approval with one conditional UPDATE: the nonce, before the expiry, once — 40 racing claims, one winner (009_claim)', async () => {
    await store.insertRequest(requestRow('req_claim', { status: 'approved', claim_nonce: 'n-1', claim_expires_at: 10_000, decided_at: 1_000 }));
    expect(await store.claimApproval('req_claim', 'n-other', 5_000, Number.MAX_SAFE_INTEGER)).toBe(false); // another approval's nonce
    expect(await store.claimApproval('req_claim', null, 5_000, Number.MAX_SAFE_INTEGER)).toBe(false); // no nonce where one is stored
    expect(await store.claimApproval('req_claim', 'n-1', 10_000, Number.MAX_SAFE_INTEGER)).toBe(false); // at the expiry
    expect(await store.claimApproval('req_claim', 'n-1', 5_000, 5_000)).toBe(false); // at the signed deadline (review finding 4)
    const wins = await Promise.all(Array.from({ length: 40 }, () => store.transaction((tx) => tx.claimApproval('req_claim', 'n-1', 5_000, Number.MAX_SAFE_INTEGER))));
    expect(wins.filter(Boolean)).toHaveLength(1);
    expect(await store.getRequest('req_claim')).toMatchObject({ status: 'executing', claimed_at: 5_000, updated_at: 5_000 });
    expect(await store.claimApproval('req_claim', 'n-1', 6_000, Number.MAX_SAFE_INTEGER)).toBe(false);
    // An approval stored before 009_claim has no nonce and no stored expiry; the engine decides its expiry.
    await store.insertRequest(requestRow('req_claim_legacy', { status: 'approved', decided_at: 1_000 }));
    expect(await store.claimApproval('req_claim_legacy', 'n-1', 5_000, Number.MAX_SAFE_INTEGER)).toBe(false);
    expect(await store.claimApproval('req_claim_legacy', null, 5_000, Number.MAX_SAFE_INTEGER)).toBe(true);
    // Only from approved.
    await store.insertRequest(requestRow('req_claim_pending', { claim_nonce: 'n-2', claim_expires_at: 10_000 }));
    expect(await store.claimApproval('req_claim_pending', 'n-2', 5_000, Number.MAX_SAFE_INTEGER)).toBe(false);
  });

  it('updates only from the expected status (compare-and-set)', async () => {
    await store.insertRequest(requestRow('req_cas'));
    expect(await store.updateRequest('req_cas', { status: 'approved', updated_at: 2_000 }, 'pending')).toBe(true);
    expect(await store.updateRequest('req_cas', { status: 'rejected', updated_at: 3_000 }, 'pending')).toBe(false);
    expect((await store.getRequest('req_cas'))?.status).toBe('approved');
  });

  it('pages listings with a keyset cursor in both directions, with filters', async () => {
    for (let i = 0; i < 7; i++) {
      await store.insertRequest(requestRow(`req_page${i}`, { agent_id: 'agt_2', action: 'page_test', created_at: 10_000 + Math.floor(i / 2) }));
    }
    const seen: string[] = [];
    let after: { createdAt: number; id: string } | undefined;
    for (;;) {
      const page = await store.listRequests({ agentId: 'agt_2', action: 'page_test', limit: 3, after, order: 'newest' });
      seen.push(...page.map((r) => r.id));
      const last = page[page.length - 1];
      if (page.length < 3 || !last) break;
      after = { createdAt: last.created_at, id: last.id };
    }
    expect(seen).toEqual(['req_page6', 'req_page5', 'req_page4', 'req_page3', 'req_page2', 'req_page1', 'req_page0']);
    const oldest = await store.listRequests({ agentId: 'agt_2', action: 'page_test', limit: 2, order: 'oldest' });
    expect(oldest.map((r) => r.id)).toEqual(['req_page0', 'req_page1']);
  });

  it('counts history per agent and action by outcome', async () => {
    const statuses = ['executed', 'executed', 'execution_failed', 'rejected', 'expired', 'pending', 'approved'];
    for (const [i, status] of statuses.entries()) {
      await store.insertRequest(requestRow(`req_hist${i}`, { action: 'hist_action', status }));
    }
    expect(await store.historyCounts('agt_1', 'hist_action')).toEqual({ total: 7, approved: 4, rejected: 2, succeeded: 2, failed: 1 });
    expect(await store.historyCounts('agt_2', 'hist_action')).toEqual({ total: 0, approved: 0, rejected: 0, succeeded: 0, failed: 0 });
  });

  it('allows one review per operator per request', async () => {
    await store.insertRequest(requestRow('req_rev'));
    const review = { id: 'rev_1', request_id: 'req_rev', operator_id: 'op_1', operator_name: 'alice', verdict: 'approve' as const, reason: null, args: null, alternative: null, payload_key: 'k', stage: 0, stage_key: null, created_at: 5 };
    await store.insertReview(review);
    await expect(store.insertReview({ ...review, id: 'rev_2' })).rejects.toThrow();
    expect((await store.reviewsFor(['req_rev'])).map((r) => r.id)).toEqual(['rev_1']);
  });

  it('appends audit entries with gapless sequence numbers, also under concurrency', async () => {
    const before = (await store.listAudit({ limit: 1000 })).length;
    const entry = (i: number) => ({ at: i, type: 'test', request_id: null, actor_type: 'system' as const, actor_id: 's', actor_name: 's', data: `{"i":${i}}` });
    await Promise.all(
      Array.from({ length: 20 }, (_, i) => store.transaction((tx) => tx.appendAudit([entry(i), entry(i + 100)]))),
    );
    const all = await store.listAudit({ limit: 1000 });
    expect(all.length).toBe(before + 40);
    all.forEach((row, i) => expect(row.seq).toBe(i + 1));
  });

  it('rolls back everything in a failed transaction', async () => {
    const before = (await store.listAudit({ limit: 1000 })).length;
    await expect(
      store.transaction(async (tx) => {
        await tx.insertRequest(requestRow('req_rollback'));
        await tx.appendAudit([{ at: 1, type: 'x', request_id: 'req_rollback', actor_type: 'system', actor_id: 's', actor_name: 's', data: '{}' }]);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.getRequest('req_rollback')).toBeUndefined();
    expect((await store.listAudit({ limit: 1000 })).length).toBe(before);
    // The next entry continues the tree without a gap: the rolled-back one drew an id (ids may
    // gap), never a seq, which the integrator gives only to committed entries.
    const [id] = await store.transaction((tx) => tx.appendAudit([{ at: 2, type: 'y', request_id: null, actor_type: 'system', actor_id: 's', actor_name: 's', data: '{}' }]));
    const last = (await store.listAudit({ limit: 1000 })).at(-1)!;
    expect(last).toMatchObject({ seq: before + 1, entry_id: id, type: 'y' });
  });

  it('isolates concurrent transactions: a failing one undoes only its own writes', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) =>
        store.transaction(async (tx) => {
          await tx.insertRequest(requestRow(`req_group${i}`));
          await tx.appendAudit([{ at: i, type: 'group', request_id: `req_group${i}`, actor_type: 'system', actor_id: 's', actor_name: 's', data: '{}' }]);
          if (i % 4 === 3) throw new Error(`job ${i} fails`);
          return i;
        }),
      ),
    );
    results.forEach((r, i) => {
      if (i % 4 === 3) expect(r).toMatchObject({ status: 'rejected', reason: { message: `job ${i} fails` } });
      else expect(r).toEqual({ status: 'fulfilled', value: i });
    });
    for (let i = 0; i < 12; i++) {
      expect(await store.getRequest(`req_group${i}`)).toEqual(i % 4 === 3 ? undefined : expect.objectContaining({ id: `req_group${i}` }));
    }
    const audit = await store.listAudit({ limit: 10_000, type: 'group' });
    expect(audit.map((e) => e.request_id).sort()).toEqual(
      Array.from({ length: 12 }, (_, i) => i).filter((i) => i % 4 !== 3).map((i) => `req_group${i}`).sort(),
    );
    const all = await store.listAudit({ limit: 100_000 });
    all.forEach((row, i) => expect(row.seq).toBe(i + 1)); // still gapless
  });

  it('finds due pending requests by deadline only', async () => {
    await store.insertRequest(requestRow('req_due1', { expires_at: 50 }));
    await store.insertRequest(requestRow('req_due2', { expires_at: 5_000_000 }));
    await store.insertRequest(requestRow('req_due3', { expires_at: 40, status: 'approved' }));
    const due = await store.duePending(100, 10);
    expect(due.map((r) => r.id)).toEqual(['req_due1']);
  });

  it('looks credentials up by hash with their operator or agent (revocation, MACs: the engine judges)', async () => {
    const cred = { last_used_at: null, expires_at: null, mac: null };
    await store.insertOperator({ id: 'op_x', name: 'xavier', roles: '["reviewer"]', groups: '[]', created_at: 1, disabled_at: null, removed_at: null, tokenless: 0, mac: null });
    await store.insertOperatorToken({ id: 'tok_x', operator_id: 'op_x', token_hash: 'hash-op', prefix: 'cso_', created_at: 1, revoked_at: null, ...cred });
    await store.insertApiKey({ id: 'key_x', agent_id: 'agt_1', key_hash: 'hash-agent', prefix: 'csk_', created_at: 1, created_by: null, revoked_at: null, ...cred });
    await store.insertApiKey({ id: 'key_r', agent_id: 'agt_1', key_hash: 'hash-revoked', prefix: 'csk_', created_at: 1, created_by: null, revoked_at: 2, ...cred });
    expect(await store.credentials.find('hash-op')).toMatchObject({ kind: 'operator', token: { id: 'tok_x' }, operator: { id: 'op_x', name: 'xavier' } });
    expect(await store.credentials.find('hash-agent')).toMatchObject({ kind: 'agent', key: { id: 'key_x', agent_id: 'agt_1' }, agentName: 'agent-one' });
    expect(await store.credentials.find('hash-revoked')).toMatchObject({ kind: 'agent', key: { revoked_at: 2 } });
    expect(await store.credentials.find('hash-nobody')).toBeUndefined();
    expect(await store.countCredentials()).toBe(3);
  });

  it('versions policies', async () => {
    await store.insertPolicy({ version: 1, hash: 'a', source: 'x: 1', loaded_at: 1 });
    await store.insertPolicy({ version: 2, hash: 'b', source: 'x: 2', loaded_at: 2 });
    expect((await store.latestPolicy())?.version).toBe(2);
    await expect(store.insertPolicy({ version: 2, hash: 'c', source: '', loaded_at: 3 })).rejects.toThrow();
  });

  it("reads an approver's own and role IP allowlists together; an empty list removes one", async () => {
    expect(await store.guard.allowlistsFor('op_ip', ['reviewer', 'lead'])).toEqual([]);
    await store.transaction(async (tx) => {
      await tx.guard.setAllowlist('op_ip', ['127.0.0.1/32'], 'op_admin', 10);
      await tx.guard.setRoleAllowlist('reviewer', ['10.0.0.0/8', '2001:db8::/32'], 'op_admin', 10);
      await tx.guard.setRoleAllowlist('lead', ['192.0.2.0/24'], 'op_admin', 10);
      await tx.guard.setRoleAllowlist('director', ['198.51.100.0/24'], 'op_admin', 10);
    });
    expect(await store.transaction((tx) => tx.guard.allowlistsFor('op_ip', ['reviewer', 'lead']))).toEqual([
      { kind: 'operator', cidrs: ['127.0.0.1/32'] },
      { kind: 'role', role: 'lead', cidrs: ['192.0.2.0/24'] },
      { kind: 'role', role: 'reviewer', cidrs: ['10.0.0.0/8', '2001:db8::/32'] },
    ]);
    expect(await store.guard.allowlistsFor('op_other', ['director'])).toEqual([{ kind: 'role', role: 'director', cidrs: ['198.51.100.0/24'] }]);
    expect(await store.guard.allowlistsFor('op_ip', [])).toEqual([{ kind: 'operator', cidrs: ['127.0.0.1/32'] }]);
    await store.guard.setRoleAllowlist('lead', ['203.0.113.0/24'], 'op_admin', 20);
    await store.guard.setRoleAllowlist('reviewer', [], 'op_admin', 20);
    expect(await store.guard.roleAllowlistFor('lead')).toEqual(['203.0.113.0/24']);
    expect(await store.guard.roleAllowlistFor('reviewer')).toBeNull();
    expect(await store.guard.allowlistsFor('op_x', ['reviewer', 'lead'])).toEqual([{ kind: 'role', role: 'lead', cidrs: ['203.0.113.0/24'] }]);
  });

  it('applies 006_role_allowlist alone to a database made before it, keeping the operator allowlists', async () => {
    const old = await connect(database.url);
    try {
      await old.db.schema.dropTable('role_ip_allowlist').execute();
      await sql`delete from countersign_migrations where name = '006_role_allowlist'`.execute(old.db);
    } finally {
      await old.destroy();
    }
    const upgraded = await connect(database.url);
    try {
      expect(upgraded.migrations.applied).toEqual(['006_role_allowlist']);
      const guard = new Store(upgraded).guard;
      expect(await guard.allowlistsFor('op_ip', ['lead'])).toEqual([{ kind: 'operator', cidrs: ['127.0.0.1/32'] }]);
      await guard.setRoleAllowlist('lead', ['10.0.0.0/8'], 'op_admin', 30);
      expect(await guard.roleAllowlistFor('lead')).toEqual(['10.0.0.0/8']);
    } finally {
      await upgraded.destroy();
    }
  });
});

describe('store capabilities: postgres', () => {
  it('serialises writers on a row lock and delivers NOTIFY across connections on commit', async () => {
    const database = ENGINES[1]!.make();
    const a = new Store(await connect(database.url));
    const b = new Store(await connect(database.url));
    try {
      expect(a.capabilities).toMatchObject({ dialect: 'postgres', rowLocks: true, skipLocked: true, listenNotify: true, groupCommit: false });
      await a.insertAgent({ id: 'agt_1', name: 'one', created_at: 1 });
      await a.insertRequest(requestRow('req_lock'));
      const heard: string[] = [];
      const unlisten = await b.listen('cs_test_channel', (p) => heard.push(p));
      const order: string[] = [];
      let releaseFirst!: () => void;
      const firstHolds = new Promise<void>((r) => (releaseFirst = r));
      const first = a.transaction(async (tx) => {
        await tx.getRequest('req_lock', true);
        order.push('first locked');
        await tx.notify('cs_test_channel', 'from-first');
        await firstHolds;
        await tx.updateRequest('req_lock', { status: 'approved', updated_at: 2 }, 'pending');
        order.push('first wrote');
      });
      await new Promise((r) => setTimeout(r, 100));
      const second = b.transaction(async (tx) => {
        const row = await tx.getRequest('req_lock', true);
        order.push(`second saw ${row?.status}`);
      });
      await new Promise((r) => setTimeout(r, 150));
      expect(heard).toEqual([]); // not before commit
      releaseFirst();
      await Promise.all([first, second]);
      expect(order).toEqual(['first locked', 'first wrote', 'second saw approved']);
      for (let i = 0; i < 50 && heard.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(heard).toEqual(['from-first']);
      await unlisten();
    } finally {
      await a.close();
      await b.close();
      await database.drop();
    }
  });

  it('reports sqlite capabilities honestly', async () => {
    const database = ENGINES[0]!.make();
    const store = new Store(await connect(database.url));
    expect(store.capabilities).toEqual({ dialect: 'sqlite', rowLocks: false, skipLocked: false, listenNotify: false, groupCommit: true });
    await store.close();
    await database.drop();
  });
});
