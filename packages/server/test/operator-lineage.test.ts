/**
 * Operator lineage (migration 017, four-eyes on admin power: review F4, review2 F1): what the
 * credentials desk writes as operators are created, granted admin and have their tokens rotated
 * (by others, or by themselves, which ends every hold), and that the migration's backfill from
 * the audit trail rebuilds exactly the same rows. Real SQLite and PostgreSQL.
 */
import { DEFAULT_POLICY_YAML } from '@countersign/core';
import type { Kysely } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { Engine } from '../src/engine/engine.ts';
import type { Principal } from '../src/engine/principal.ts';
import { m017_agent_config } from '../src/store/migrations/017_agent_config.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';
import { TEST_SERVER_SECRET } from './support/engine.ts';

const raw = (engine: Engine) => (engine.store as unknown as { db: Kysely<any> }).db;
const id = (p: Principal) => (p.kind === 'operator' ? p.operatorId : '');

describe.each(ENGINES)('operator lineage ($name)', ({ make }) => {
  let database: TestDatabase;
  let engine: Engine;
  afterEach(async () => {
    await engine.close();
    await database.drop();
  });

  it('a creator\'s hold ends when the operator rotates its own token; a rotation by another, a hold at an admin grant and the grant never do; the backfill from the trail rebuilds the same rows', async () => {
    database = make();
    engine = await Engine.open({ connection: await connect(database.url), serverSecret: TEST_SERVER_SECRET });
    await engine.activatePolicy(DEFAULT_POLICY_YAML, 'test');
    const root = (await engine.authenticate((await engine.bootstrap())!.adminToken))!;
    const as = async (token: string) => (await engine.authenticate(token))!;
    const bob = await as((await engine.createOperator(root, { name: 'bob', roles: ['admin'] })).token);
    const carol = await as((await engine.createOperator(root, { name: 'carol', roles: ['admin'] })).token);
    const rae = await as((await engine.createOperator(bob, { name: 'rae', roles: ['reviewer'] })).token);
    await engine.credentials.rotateToken(bob, 'me');
    const raeToken = (await engine.credentials.rotateToken(carol, id(rae))).token; // carol holds rae's token now, for good (bob's hold too, for now)
    await engine.credentials.updateOperator(carol, id(rae), { roles: ['reviewer', 'admin'] }); // bob still held it: now for good
    await engine.credentials.rotateToken(await as(raeToken), 'me'); // ends bob's creation hold only
    const rows = async () =>
      (await raw(engine).selectFrom('operator_lineage').select(['operator_id', 'issuer_id', 'kind']).execute())
        .map((r) => `${r.issuer_id}>${r.operator_id}:${r.kind}`)
        .sort();
    const name = new Map([id(root), id(bob), id(carol), id(rae)].map((v, i) => [v, ['root', 'bob', 'carol', 'rae'][i]!]));
    const named = (list: string[]) => list.map((r) => r.replace(/op_[A-Za-z0-9_-]+/g, (m) => name.get(m) ?? m)).sort();
    const live = await rows();
    expect(named(live)).toEqual(
      [
        'root>bob:admin', // bob rotated his own token: root no longer holds it, but made him admin
        'root>carol:created',
        'root>carol:admin',
        'bob>rae:token', // bob created rae and still held her token when she was made admin
        'carol>rae:token',
        'carol>rae:admin',
      ].sort(),
    );
    // Rebuild the table from the trail, as the migration does on an upgraded database.
    await raw(engine).schema.dropTable('operator_lineage').execute();
    await raw(engine).schema.dropTable('agent_config_versions').execute();
    await raw(engine).schema.dropTable('agent_configs').execute();
    await m017_agent_config.up(raw(engine));
    expect(await rows()).toEqual(live);
  });
});
