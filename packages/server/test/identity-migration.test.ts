/**
 * Migration 022_identity both ways, both engines: down drops the identity tables (and only
 * them), up makes them again, and the rows the rest of the schema holds are untouched.
 */
import { Migrator } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, parseDatabaseUrl } from '../src/store/connect.ts';
import { migrationProvider } from '../src/store/migrations/index.ts';
import { Store } from '../src/store/store.ts';
import { ENGINES, type TestDatabase } from './support/databases.ts';

const TABLES = ['scim_groups', 'scim_members', 'scim_tokens', 'scim_users', 'sso_identities', 'sso_logins'];

function migrator(db: ConstructorParameters<typeof Migrator>[0]['db'], url: string): Migrator {
  const parsed = parseDatabaseUrl(url);
  return new Migrator({
    db,
    provider: migrationProvider,
    migrationTableName: 'countersign_migrations',
    migrationLockTableName: 'countersign_migrations_lock',
    allowUnorderedMigrations: true,
    ...(parsed.dialect === 'postgres' ? { migrationTableSchema: parsed.schema ?? 'public' } : {}),
  });
}

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

describe.each(ENGINES)('migration 022_identity: $name', ({ make }) => {
  it('down drops the identity tables and keeps the rest; up makes them again', async () => {
    const database: TestDatabase = make();
    cleanup.push(() => database.drop());
    const conn = await connect(database.url);
    cleanup.push(async () => conn.db.destroy());
    const store = new Store(conn, undefined, { pollMs: 3_600_000 });
    await store.insertAgent({ id: 'agt_1', name: 'agent', created_at: 1 });
    await conn.db.insertInto('sso_logins').values({ id_hash: 'h', state: 's', nonce: 'n', verifier: 'v', created_at: 1, expires_at: 2 }).execute();
    // PostgreSQL: only this test's schema (other tests' schemas hold the same tables).
    const schema = parseDatabaseUrl(database.url).schema;
    const tables = async () => (await conn.db.introspection.getTables()).filter((t) => database.name === 'sqlite' || t.schema === schema).map((t) => t.name).filter((n) => TABLES.includes(n)).sort();
    expect(await tables()).toEqual(TABLES);
    const m = migrator(conn.db, database.url);
    // Down past 022 only: the later migrations go down first, then come back with 022.
    const all = (await m.getMigrations()).map((x) => x.name).sort();
    const before = all[all.indexOf('022_identity') - 1]!;
    const down = await m.migrateTo(before);
    expect(down.error).toBeUndefined();
    expect(down.results?.find((r) => r.migrationName === '022_identity')).toMatchObject({ direction: 'Down', status: 'Success' });
    expect(await tables()).toEqual([]);
    expect(await conn.db.selectFrom('agents').select('id').execute()).toEqual([{ id: 'agt_1' }]);
    const up = await m.migrateToLatest();
    expect(up.error).toBeUndefined();
    expect(await tables()).toEqual(TABLES);
    expect(await conn.db.selectFrom('sso_logins').selectAll().execute()).toEqual([]);
  });
});
