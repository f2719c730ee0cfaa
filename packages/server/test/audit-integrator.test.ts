/**
 * The audit integrator (issue 14): entries are written without a tree position and integrated
 * after commit. On the real PostgreSQL (two connections, two processes) and real SQLite files:
 * out-of-order commits, kill -9 during integration, two integrators on one database, and a
 * database writer's attacks on the queue of pending entries.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { MemoryTree, TrailVerifier, toBase64, utf8 } from '@countersign/core';
import { afterEach, describe, expect, it } from 'vitest';
import { ephemeralAuditKey, hasher } from '../src/audit/crypto.ts';
import { AuditService } from '../src/audit/service.ts';
import { memorySignerState } from '../src/audit/signer-state.ts';
import { connect, type Connection } from '../src/store/connect.ts';
import { Store, type NewAuditEntry } from '../src/store/store.ts';
import { TrailQueries, leafJsonOf } from '../src/store/trail.ts';
import { PG_BASE_URL, postgresDatabase, sqliteDatabase, type TestDatabase } from './support/databases.ts';

const CHILD = fileURLToPath(new URL('./support/integrator-child.ts', import.meta.url));
const entry = (i: number, type = 'test'): NewAuditEntry => ({ at: 1_700_000_000_000 + i, type, request_id: `req_${i}`, actor_type: 'system', actor_id: 'system', actor_name: 'test', data: JSON.stringify({ i }) });

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanup.length) await cleanup.pop()!().catch(() => {});
});

async function open(db: TestDatabase, options?: ConstructorParameters<typeof Store>[2]): Promise<Store> {
  const store = new Store(await connect(db.url), undefined, options);
  cleanup.push(() => store.close());
  return store;
}

/** The integrated trail is gapless, each pending id appears once, and the stored tree is the one its leaves make. */
async function expectSoundTrail(store: Store, distinctIds = true): Promise<{ size: number; ids: number[] }> {
  const head = await store.trail.head();
  const rows = await store.trail.entries(1, head.size);
  expect(rows.map((r) => Number(r.seq))).toEqual(Array.from({ length: head.size }, (_, i) => i + 1));
  const tree = new MemoryTree(hasher);
  for (const row of rows) tree.append(hasher.hashLeaf(utf8(leafJsonOf(row))));
  expect(toBase64(tree.root())).toBe(toBase64(head.root()));
  const ids = rows.map((r) => Number(r.entry_id));
  if (distinctIds) expect(new Set(ids).size, 'no entry integrated twice').toBe(ids.length);
  // The offline verifier accepts an export of it, signed.
  const service = new AuditService(store, ephemeralAuditKey(), Date.now, memorySignerState());
  await service.checkpoint();
  const key = service.key;
  const verifier = new TrailVerifier({ hasher, keyId: key.keyId, verifySignature: (m, s) => key.verify(m, s) });
  for await (const chunk of service.exportLines()) for (const line of chunk.split('\n')) verifier.push(line);
  expect(verifier.finish()).toMatchObject({ ok: true, treeSize: head.size });
  return { size: head.size, ids };
}

async function countPending(connection: Connection): Promise<number> {
  const row = await connection.db.selectFrom('audit_pending').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('PostgreSQL: ids commit out of order', () => {
  it('entry N+1 commits before entry N: both are integrated, the tree is valid, no gap', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db, { pollMs: 3_600_000 });
    let releaseN!: () => void;
    const holdN = new Promise<void>((r) => (releaseN = r));
    let idN = 0;
    // Entry N draws its id first and stays open on one connection …
    const txN = store.transaction(async (tx) => {
      idN = (await tx.appendAudit([entry(1, 'first_drawn')]))[0]!;
      await holdN;
    });
    while (idN === 0) await sleep(5);
    // … entry N+1 draws the next id on another connection and commits first.
    const [idN1] = await store.transaction((tx) => tx.appendAudit([entry(2, 'second_drawn')]));
    expect(idN1).toBeGreaterThan(idN);
    // The integrator takes what committed (N+1) and leaves N, which no snapshot can see yet.
    expect(await store.settleAudit()).toBe(true);
    expect((await store.trail.head()).size).toBe(1);
    expect((await store.trail.entries(1, 1))[0]).toMatchObject({ type: 'second_drawn', entry_id: idN1 });
    releaseN();
    await txN;
    expect(await store.settleAudit()).toBe(true);
    const { size, ids } = await expectSoundTrail(store);
    expect(size).toBe(2);
    expect(ids).toEqual([idN1, idN]);
  });

  it('a transaction left open elsewhere on the server (idle, holding an xid) does not stall integration', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db);
    const idle = new pg.Client({ connectionString: PG_BASE_URL });
    await idle.connect();
    cleanup.push(() => idle.end());
    await idle.query('begin');
    await idle.query('select pg_current_xact_id()'); // an xid: it holds back every snapshot's xmin
    await store.transaction((tx) => tx.appendAudit([entry(1), entry(2)]));
    const started = Date.now();
    expect(await store.settleAudit(3000)).toBe(true);
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await expectSoundTrail(store)).size).toBe(2);
    await idle.query('rollback');
  });

  it('many concurrent writers on two stores (two pools): every entry integrated once, in one gapless tree', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const a = await open(db);
    const b = await open(db);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        (i % 2 ? a : b).transaction(async (tx) => {
          await tx.appendAudit([entry(i), entry(i + 1000)]);
          if (i % 5 === 0) throw new Error('rolled back');
        }),
      ),
    );
    const committed = outcomes.filter((o) => o.status === 'fulfilled').length;
    expect(committed).toBe(160);
    expect(await a.settleAudit()).toBe(true);
    expect(await b.settleAudit()).toBe(true);
    const { size } = await expectSoundTrail(a);
    expect(size).toBe(2 * committed);
    const rows = await a.trail.entries(1, size);
    expect(rows.filter((r) => (JSON.parse(r.data) as { i: number }).i % 1000 % 5 === 0)).toHaveLength(0);
  });
});

function spawnChild(args: string[]): { child: ChildProcess; lines: string[]; exited: Promise<unknown> } {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], { cwd: fileURLToPath(new URL('..', import.meta.url)), stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = once(child, 'exit');
  cleanup.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  void exited.then(() => err && lines.push(`stderr: ${err}`));
  return { child, lines, exited };
}

describe.each([
  { name: 'postgres', make: postgresDatabase },
  { name: 'sqlite', make: sqliteDatabase },
])('kill -9 during integration ($name)', ({ make }) => {
  it('loses no entry and integrates none twice; the next integrator finishes the work', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    // Pending entries, written by the real writer path with no integrator running.
    const writer = await open(db, { pollMs: 3_600_000 });
    await writer.integrator.stop();
    const n = 6000;
    const written: number[] = [];
    for (let i = 0; i < n; i += 500) {
      written.push(...(await writer.transaction((tx) => tx.appendAudit(Array.from({ length: 500 }, (_, k) => entry(i + k))))));
    }
    await writer.close();
    cleanup.pop();

    const { child, lines, exited } = spawnChild(['drain', db.url, '200']);
    // Kill it once it has integrated some batches but not all: it is always inside one.
    const deadline = Date.now() + 60_000;
    while (lines.filter((l) => l === 'batch').length < 3) {
      if (Date.now() > deadline || lines.some((l) => l.startsWith('stderr') || l === 'done')) throw new Error(`child: ${lines.join(' | ')}`);
      await sleep(2);
    }
    child.kill('SIGKILL');
    await exited;

    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    const integrated = Number((await raw.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq);
    expect(integrated).toBeGreaterThan(0);
    expect(integrated).toBeLessThan(n);
    // What the crash left: the integrated prefix and the rest still pending, nothing in both or neither.
    expect(integrated + (await countPending(raw))).toBe(n);

    const store = await open(db);
    expect(await store.settleAudit(30_000)).toBe(true);
    const { size, ids } = await expectSoundTrail(store);
    expect(size).toBe(n);
    expect([...ids].sort((x, y) => x - y)).toEqual(written);
    expect(await countPending(raw)).toBe(0);
  }, 120_000);
});

describe('two integrators on one PostgreSQL database', () => {
  it('never run at once (two processes), and together integrate every entry once', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db); // migrates the schema before the children start
    const dir = mkdtempSync(join(tmpdir(), 'cs-integrator-'));
    cleanup.push(async () => rmSync(dir, { recursive: true, force: true }));
    const log = join(dir, 'log');
    writeFileSync(log, '');
    const kids = [spawnChild(['contend', db.url, log, '25']), spawnChild(['contend', db.url, log, '25'])];
    const codes = await Promise.all(kids.map((k) => k.exited));
    expect(codes.map((c) => (c as [number])[0]), kids.map((k) => k.lines.join(' ')).join(' / ')).toEqual([0, 0]);
    const events = readFileSync(log, 'utf8').trim().split('\n');
    let inside: string | null = null;
    for (const e of events) {
      const [what, pid] = e.split(' ');
      if (what === 'enter') {
        expect(inside, `integrator ${pid} entered while ${inside} was integrating`).toBeNull();
        inside = pid!;
      } else {
        expect(inside).toBe(pid);
        inside = null;
      }
    }
    expect(new Set(events.map((e) => e.split(' ')[1])).size, 'both processes integrated').toBe(2);
    expect(await store.settleAudit()).toBe(true);
    expect((await expectSoundTrail(store)).size).toBe(50);
  }, 120_000);

  it('a batch runs only under the lock: while another session holds it, entries wait; released, they are integrated', async () => {
    const db = postgresDatabase();
    cleanup.push(() => db.drop());
    const store = await open(db);
    const schema = new URL(db.url).searchParams.get('schema')!;
    const holder = new pg.Client({ connectionString: PG_BASE_URL });
    await holder.connect();
    cleanup.push(() => holder.end());
    await holder.query(`select pg_advisory_lock(hashtext($1 || ':countersign:audit-integrator'))`, [schema]);
    await store.transaction((tx) => tx.appendAudit([entry(1)]));
    expect(await store.settleAudit(500)).toBe(false);
    expect((await store.trail.head()).size).toBe(0);
    await holder.query(`select pg_advisory_unlock(hashtext($1 || ':countersign:audit-integrator'))`, [schema]);
    expect(await store.settleAudit(3000)).toBe(true);
    expect((await expectSoundTrail(store)).size).toBe(1);
  });
});

describe.each([
  { name: 'postgres', make: postgresDatabase },
  { name: 'sqlite', make: sqliteDatabase },
])('a database writer attacks the pending queue ($name)', ({ make }) => {
  it('forged ids (far ahead of the sequence, negative, colliding with an integrated entry_id) are each integrated once; genuine entries after them still are, without a gap', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db);
    await store.transaction((tx) => tx.appendAudit([entry(1)]));
    expect(await store.settleAudit()).toBe(true);
    const firstId = Number((await store.trail.entries(1, 1))[0]!.entry_id);
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    const forged = (id: number, i: number) => ({ id, ...entry(100 + i, 'forged') });
    await raw.db.insertInto('audit_pending').values([forged(1_000_000_000, 0), forged(-5, 1), forged(firstId, 2)]).execute();
    // The genuine writer keeps drawing ids from its sequence, below the forged one.
    const genuine = await store.transaction((tx) => tx.appendAudit([entry(2), entry(3)]));
    expect(await store.settleAudit()).toBe(true);
    // The planted copy of an integrated id is a second entry, not a second integration of the first.
    const { size, ids } = await expectSoundTrail(store, false);
    expect(ids.filter((id) => id === firstId)).toHaveLength(2);
    for (const id of genuine) expect(ids.filter((x) => x === id)).toHaveLength(1);
    expect(size).toBe(6);
    const rows = await store.trail.entries(1, size);
    expect(rows.filter((r) => r.type === 'forged')).toHaveLength(3);
    expect(rows.filter((r) => r.type === 'test')).toHaveLength(3);
  });

  it('an entry that cannot be a leaf (a time out of range) does not stall the trail: it is kept as audit_entry_malformed and every entry after it is integrated', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db);
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    await raw.db.insertInto('audit_pending').values({ ...entry(0, 'poison'), at: 9_000_000_000_000_000 }).execute();
    await store.transaction((tx) => tx.appendAudit([entry(1), entry(2)]));
    expect(await store.settleAudit()).toBe(true);
    const { size } = await expectSoundTrail(store);
    expect(size).toBe(3);
    const rows = await store.trail.entries(1, 3);
    const bad = rows.find((r) => r.type === 'audit_entry_malformed')!;
    expect(JSON.parse(bad.data)).toMatchObject({ problem: expect.stringMatching(/not a time/), fields: { type: 'poison', at: '9000000000000000' } });
    expect(rows.filter((r) => r.type === 'test')).toHaveLength(2);
  });

  it('a crash between two batches: the first stays integrated, the second is taken whole by the next run', async () => {
    const db = make();
    cleanup.push(() => db.drop());
    const store = await open(db, { pollMs: 3_600_000, batch: 3 });
    await store.integrator.stop();
    await store.transaction((tx) => tx.appendAudit([1, 2, 3, 4, 5].map((i) => entry(i))));
    const postgres = db.name === 'postgres';
    const raw = await connect(db.url);
    cleanup.push(() => raw.destroy());
    // One batch commits; the next is rolled back half-way (the crash: its transaction never commits).
    await raw.db.transaction().execute((trx) => new TrailQueries(trx).integrateBatch(3, postgres));
    await expect(
      raw.db.transaction().execute(async (trx) => {
        await new TrailQueries(trx).integrateBatch(3, postgres);
        throw new Error('crash');
      }),
    ).rejects.toThrow('crash');
    expect(Number((await raw.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq)).toBe(3);
    expect(await countPending(raw)).toBe(2);
    const next = await open(db);
    expect(await next.settleAudit()).toBe(true);
    const { size } = await expectSoundTrail(next);
    expect(size).toBe(5);
  });
});

