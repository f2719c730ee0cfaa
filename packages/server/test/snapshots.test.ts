/**
 * What must not move while the server is re-laid (issue 10), kept as tests: the OpenAPI
 * document, the migrated schema on both databases (tables, columns, types, indexes, migration
 * keys), the names every package's entry points export (values and types), and `--help` of every
 * CLI command. A difference fails here; a deliberate contract change updates the file under
 * test/snapshots/ in the same commit, so the change is visible in review.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { sql } from 'kysely';
import ts from 'typescript';
import { afterAll, describe, expect, it } from 'vitest';
import { buildProgram } from '../src/cli/program.ts';
import { createApp } from '../src/http/app.ts';
import { connect } from '../src/store/connect.ts';
import { ENGINES, sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { openTestEngine } from './support/engine.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const snapshot = (name: string) => resolve(import.meta.dirname, 'snapshots', name);
const json = (value: unknown) => `${JSON.stringify(value, null, 2)}\n`;

const dropped: TestDatabase[] = [];
afterAll(async () => {
  for (const d of dropped) await d.drop();
});

describe('snapshots', () => {
  it('GET /openapi.json', async () => {
    const database = sqliteDatabase();
    dropped.push(database);
    const t = await openTestEngine(database.url);
    try {
      const app = createApp({ engine: t.engine, log: () => {} });
      const res = await app.request('/openapi.json');
      expect(res.status).toBe(200);
      await expect(json(await res.json())).toMatchFileSnapshot(snapshot('openapi.json'));
    } finally {
      await t.engine.close();
    }
  });

  describe.each(ENGINES)('the migrated schema on $name', ({ name, make }) => {
    it('tables, columns, types, indexes and migration keys', async () => {
      const database = make();
      dropped.push(database);
      const connection = await connect(database.url);
      try {
        const schema = name === 'sqlite' ? await sqliteSchema(connection.db) : await postgresSchema(connection.db);
        await expect(json(schema)).toMatchFileSnapshot(snapshot(`schema.${name}.json`));
      } finally {
        await connection.destroy();
      }
    });
  });

  it("every package's exported names", () => {
    const entries = {
      '@countersign/core': 'packages/core/src/index.ts',
      // The cheap subpaths the CLI's start-up path imports instead of the index (CLI cold start).
      '@countersign/core/canonical': 'packages/core/src/canonical.ts',
      '@countersign/core/constants': 'packages/core/src/constants.ts',
      '@countersign/core/duration': 'packages/core/src/duration.ts',
      '@countersign/core/errors': 'packages/core/src/errors.ts',
      '@countersign/core/format': 'packages/core/src/format.ts',
      // ATT&CK technique names, for the dashboard card and the channels.
      '@countersign/core/attack': 'packages/core/src/attack.ts',
      '@countersign/client': 'packages/client/src/index.ts',
      '@countersign/client/embedded': 'packages/client/src/embedded.ts',
      '@countersign/server': 'packages/server/src/index.ts',
      '@countersign/verify': 'packages/verify/src/index.ts',
    };
    const files = Object.values(entries).map((f) => resolve(ROOT, f));
    const config = ts.getParsedCommandLineOfConfigFile(resolve(ROOT, 'tsconfig.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} });
    const program = ts.createProgram(files, { ...(config?.options ?? {}), noEmit: true });
    const checker = program.getTypeChecker();
    const exports: Record<string, string[]> = {};
    for (const [name, file] of Object.entries(entries)) {
      const source = program.getSourceFile(resolve(ROOT, file));
      const symbol = source && checker.getSymbolAtLocation(source);
      if (!symbol) throw new Error(`no module symbol for ${file}`);
      exports[name] = checker.getExportsOfModule(symbol).map((s) => s.getName()).sort();
    }
    expect(exports['@countersign/core']?.length).toBeGreaterThan(20);
    return expect(json(exports)).toMatchFileSnapshot(snapshot('exports.json'));
  }, 180_000); // type-checks every package's entry points: slow on a busy machine

  it('--help of every command', async () => {
    const program = buildProgram();
    const pages: string[] = [];
    const walk = (command: Command, path: string[]) => {
      command.configureHelp({ helpWidth: 120 });
      pages.push(`$ ${['countersign', ...path, '--help'].join(' ')}\n${command.helpInformation()}`);
      for (const sub of command.commands) walk(sub, [...path, sub.name()]);
    };
    walk(program, []);
    expect(pages.length).toBeGreaterThan(20);
    await expect(pages.join('\n')).toMatchFileSnapshot(snapshot('cli-help.txt'));
  });
});

type Db = Awaited<ReturnType<typeof connect>>['db'];

async function sqliteSchema(db: Db) {
  const tables = await sql<{ name: string }>`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`.execute(db);
  const out: Record<string, unknown> = {};
  for (const { name } of tables.rows) {
    const columns = await sql<{ name: string; type: string; notnull: number; dflt_value: unknown; pk: number }>`SELECT * FROM pragma_table_info(${name})`.execute(db);
    const indexes = await sql<{ name: string; sql: string | null }>`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ${name} ORDER BY name`.execute(db);
    const keys = await sql<{ table: string; from: string; to: string }>`SELECT "table", "from", "to" FROM pragma_foreign_key_list(${name}) ORDER BY "from"`.execute(db);
    out[name] = {
      columns: columns.rows.map((c) => ({ name: c.name, type: c.type, notNull: c.notnull === 1, default: c.dflt_value, pk: c.pk })),
      indexes: indexes.rows.map((i) => ({ name: i.name, sql: i.sql })),
      foreignKeys: keys.rows.map((k) => `${k.from} → ${k.table}.${k.to}`),
    };
  }
  const migrations = await sql<{ name: string }>`SELECT name FROM countersign_migrations ORDER BY name`.execute(db);
  return { tables: out, migrations: migrations.rows.map((m) => m.name) };
}

async function postgresSchema(db: Db) {
  const schema = (await sql<{ s: string }>`SELECT current_schema() AS s`.execute(db)).rows[0]!.s;
  const columns = await sql<{ table_name: string; column_name: string; data_type: string; is_nullable: string; column_default: string | null }>`
    SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns
    WHERE table_schema = ${schema} ORDER BY table_name, ordinal_position`.execute(db);
  const indexes = await sql<{ tablename: string; indexname: string; indexdef: string }>`
    SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = ${schema} ORDER BY tablename, indexname`.execute(db);
  const constraints = await sql<{ table_name: string; constraint_name: string; def: string }>`
    SELECT cl.relname AS table_name, co.conname AS constraint_name, pg_get_constraintdef(co.oid) AS def
    FROM pg_constraint co JOIN pg_class cl ON cl.oid = co.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
    WHERE n.nspname = ${schema} ORDER BY cl.relname, co.conname`.execute(db);
  const out: Record<string, { columns: unknown[]; indexes: unknown[]; constraints: unknown[] }> = {};
  const table = (name: string) => (out[name] ??= { columns: [], indexes: [], constraints: [] });
  for (const c of columns.rows) {
    table(c.table_name).columns.push({ name: c.column_name, type: c.data_type, notNull: c.is_nullable === 'NO', default: c.column_default });
  }
  const unqualified = (text: string) => text.split(`${schema}.`).join('');
  for (const i of indexes.rows) table(i.tablename).indexes.push({ name: i.indexname, def: unqualified(i.indexdef) });
  for (const c of constraints.rows) table(c.table_name).constraints.push({ name: c.constraint_name, def: unqualified(c.def) });
  const migrations = await sql<{ name: string }>`SELECT name FROM countersign_migrations ORDER BY name`.execute(db);
  return { tables: out, migrations: migrations.rows.map((m) => m.name) };
}
