/**
 * Baselines for bench/trail.ts, each behind node:http on loopback, doing one write per request
 * and nothing else (no auth, validation, policy or audit):
 *
 *   node --import tsx bench/bare-db.ts pg-insert URL      # one pooled INSERT (pool of 10, as the store's)
 *   node --import tsx bench/bare-db.ts pg-boss URL        # pg-boss `send` on the same database
 *   node --import tsx bench/bare-db.ts sqlite-insert PATH # one INSERT, WAL, synchronous=NORMAL
 *
 * Prints `{"url": …}` once listening.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

const [mode, target] = process.argv.slice(2) as [string, string];

async function writer(): Promise<(body: string) => Promise<void>> {
  if (mode === 'pg-insert') {
    const pg = (await import('pg')).default;
    const url = new URL(target);
    const schema = url.searchParams.get('schema');
    url.searchParams.delete('schema');
    const pool = new pg.Pool({ connectionString: url.toString(), max: 10, ...(schema ? { options: `-c search_path=${schema}` } : {}) });
    if (schema) await pool.query(`create schema if not exists ${schema.replace(/[^a-z0-9_]/g, '')}`);
    await pool.query('create table if not exists bare (id text primary key, body text not null, created_at bigint not null)');
    return async (body) => {
      await pool.query('insert into bare (id, body, created_at) values ($1, $2, $3)', [`req_${randomBytes(13).toString('hex')}`, body, Date.now()]);
    };
  }
  if (mode === 'pg-boss') {
    const PgBoss = (await import('pg-boss')).default as unknown as new (o: object) => { start(): Promise<void>; createQueue(n: string): Promise<void>; send(n: string, d: object): Promise<string | null> };
    const url = new URL(target);
    const schema = `${url.searchParams.get('schema') ?? 'public'}_boss`;
    url.searchParams.delete('schema');
    const boss = new PgBoss({ connectionString: url.toString(), schema, max: 10, supervise: false, schedule: false });
    await boss.start();
    await boss.createQueue('bench');
    return async (body) => {
      await boss.send('bench', { body });
    };
  }
  if (mode === 'sqlite-insert') {
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(target);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.exec('create table if not exists bare (id text primary key, body text not null, created_at integer not null)');
    const insert = db.prepare('insert into bare (id, body, created_at) values (?, ?, ?)');
    return async (body) => {
      insert.run(`req_${randomBytes(13).toString('hex')}`, body, Date.now());
    };
  }
  throw new Error(`unknown mode ${mode}`);
}

const write = await writer();
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    write(Buffer.concat(chunks).toString()).then(
      () => {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      },
      (err: Error) => {
        res.writeHead(500);
        res.end(err.message);
      },
    );
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address() as { port: number };
  console.log(JSON.stringify({ url: `http://127.0.0.1:${address.port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
