/**
 * The practical ceiling for create throughput: a bare Hono route on the same HTTP server
 * adapter doing one INSERT of a row of similar size into a SQLite file with the same pragmas
 * (WAL, synchronous=FULL) as Countersign's store. No auth, no validation, no policy, no audit.
 */
import { randomBytes } from 'node:crypto';
import { serve } from '@hono/node-server';
import Database from 'better-sqlite3';
import { Hono } from 'hono';

const path = process.argv[2];
if (!path) throw new Error('usage: bare-server.ts DB_PATH');
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
db.exec('CREATE TABLE IF NOT EXISTS bare (id TEXT PRIMARY KEY, body TEXT NOT NULL, created_at INTEGER NOT NULL)');
const insert = db.prepare('INSERT INTO bare (id, body, created_at) VALUES (?, ?, ?)');

const app = new Hono();
app.post('/insert', async (c) => {
  const body = await c.req.text();
  const id = `req_${randomBytes(13).toString('hex')}`;
  insert.run(id, body, Date.now());
  return c.json({ id }, 201);
});

const server = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, (info) => {
  console.log(JSON.stringify({ url: `http://127.0.0.1:${info.port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
