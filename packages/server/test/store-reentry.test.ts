/**
 * SQLite has one connection, so a query on the store itself (rather than on the transaction's
 * handle) from inside a transaction waits for that transaction, which waits for the query: the
 * whole server hangs. Under the test runner the store refuses such a query at once, so every
 * test in the suite doubles as a check; these pin the guard and the bug that prompted it.
 */
import { CreateRequestBody, DEFAULT_POLICY_YAML } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import { matchCodeFor } from '../src/guard/totp.ts';
import { connect } from '../src/store/connect.ts';
import { Store } from '../src/store/store.ts';
import { sqliteDatabase } from './support/databases.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('a store query inside a transaction (SQLite)', () => {
  it('is refused at once, naming the call, instead of waiting for itself', async () => {
    const database = sqliteDatabase();
    const store = new Store(await connect(database.url));
    cleanup.push(async () => {
      await store.close();
      await database.drop();
    });
    await expect(store.transaction(async () => store.findAgentByName('x'))).rejects.toThrow(/store\.selectFrom called inside a transaction/);
    await expect(store.transaction(async () => store.transaction(async () => 1))).rejects.toThrow(/store\.transaction called inside a transaction/);
    // Outside a transaction, and on the transaction's own handle, queries run as usual.
    expect(await store.findAgentByName('x')).toBeUndefined();
    expect(await store.transaction(async (tx) => tx.findAgentByName('x'))).toBeUndefined();
  });

  it('a critical approval with its match code works before anyone in this process read the card (it read the secret outside the review transaction)', async () => {
    const database = sqliteDatabase();
    const engine = await Engine.open({ connection: await connect(database.url) });
    cleanup.push(async () => {
      await engine.close();
      await database.drop();
    });
    await engine.activatePolicy(DEFAULT_POLICY_YAML.replace(/mfa: true/, 'mfa: false'), 'test');
    const boot = (await engine.bootstrap())!;
    const agent = (await engine.authenticate(boot.agentKey))!;
    const admin = (await engine.authenticate(boot.adminToken))!;
    const { request } = await engine.createRequest(agent, CreateRequestBody.parse({ action: 'delete_data', args: { table: 'users' }, riskLevel: 'critical' }));
    expect(request.assessment.riskLevel).toBe('critical');
    const secret = (await engine.store.guard.setting('match_secret'))!;
    const reviewed = await engine.review(admin, request.id, { verdict: 'approve', matchCode: matchCodeFor(secret, request.id) });
    expect(reviewed.reviews.map((r) => r.verdict)).toEqual(['approve']);
  });
});
