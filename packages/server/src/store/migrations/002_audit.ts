import type { Kysely, Migration } from 'kysely';
import type { AuditLogTable, Database } from '../schema.ts';
import { TrailQueries } from '../trail.ts';

/**
 * The audit migration. Databases that already hold entries (written before the tree existed)
 * get their tree built here, so the tree size always equals the last seq.
 */
export const m002_audit: Migration = {
  async up(db: Kysely<any>) {
    await db.schema
      .createTable('audit_nodes')
      .addColumn('level', 'integer', (c) => c.notNull())
      .addColumn('idx', 'bigint', (c) => c.notNull())
      .addColumn('hash', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('audit_nodes_pk', ['level', 'idx'])
      .execute();
    await db.schema
      .createTable('audit_checkpoints')
      .addColumn('tree_size', 'bigint', (c) => c.primaryKey())
      .addColumn('root_hash', 'text', (c) => c.notNull())
      .addColumn('timestamp', 'text', (c) => c.notNull())
      .addColumn('key_id', 'text', (c) => c.notNull())
      .addColumn('signature', 'text', (c) => c.notNull())
      .addColumn('created_at', 'bigint', (c) => c.notNull())
      .execute();
    await db.schema.alterTable('audit_head').addColumn('frontier', 'text', (c) => c.notNull().defaultTo('[]')).execute();
    // For `GET /v1/audit?actor=&from=&to=` (request ids have their index since 001).
    await db.schema.createIndex('audit_log_actor').on('audit_log').columns(['actor_id', 'seq']).execute();
    await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();

    const head = await db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
    const size = Number(head.seq);
    const trail = new TrailQueries(db as Kysely<Database>);
    let frontier = '[]';
    for (let done = 0; done < size; ) {
      const rows = (await db
        .selectFrom('audit_log')
        .selectAll()
        .where('seq', '>', done)
        .where('seq', '<=', Math.min(size, done + 5000))
        .orderBy('seq')
        .execute()) as AuditLogTable[];
      if (rows.length === 0) throw new Error(`audit_log has no entry ${done + 1} (head says ${size})`);
      await trail.appendLeaves(done, frontier, rows);
      done += rows.length;
      frontier = (await db.selectFrom('audit_head').select('frontier').where('id', '=', 1).executeTakeFirstOrThrow()).frontier as string;
    }
  },
};
