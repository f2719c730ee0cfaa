/**
 * The keys the audit trail has been signed with, and its checkpoint origin (migration 015): the
 * one writer of `audit_keys` and `audit_origin`.
 *
 * Rotation and checkpoint inserts meet here. A rotation takes the rotation lock exclusively
 * (PostgreSQL: a transaction-scoped advisory lock; SQLite: the write transaction itself, which
 * `begin immediate` already makes the only writer) and moves the current key by a
 * compare-and-set (`retire`: only the row that is still current, with no hand-over yet). Every
 * checkpoint insert takes the same lock shared and re-reads the current key in its own
 * transaction, so a server still holding the retired key can never store a checkpoint after the
 * rotation committed.
 */
import { sql, type Kysely, type Transaction } from 'kysely';
import { SignedHandover } from '@countersign/core';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

export interface AuditKeysTable {
  key_id: string;
  /** Base64 of the raw Ed25519 public key. */
  public_key: string;
  /** The tree size its authority ended at, once retired; null for the current key. */
  handed_over_at: number | null;
  /** JSON of the hand-over statement that retired it (signed by it and its successor). */
  handover: string | null;
  created_at: number;
}

export interface RecordedKey {
  keyId: string;
  publicKey: string;
  handedOverAt: number | null;
  handover: SignedHandover | null;
}

/** The deployment's checkpoint origin (migration 015), kept from the first start. */
export interface AuditOriginTable {
  id: number;
  origin: string;
  created_at: number;
}

type Db = Kysely<Database> | Transaction<Database>;

const ROTATION_LOCK = 'countersign.audit.key-rotation';

function recorded(row: AuditKeysTable): RecordedKey {
  let handover: SignedHandover | null = null;
  if (row.handover !== null) {
    try {
      const parsed = SignedHandover.safeParse(JSON.parse(row.handover));
      handover = parsed.success ? parsed.data : null;
    } catch {
      handover = null;
    }
  }
  return { keyId: row.key_id, publicKey: row.public_key, handedOverAt: row.handed_over_at === null ? null : Number(row.handed_over_at), handover };
}

export class AuditKeyQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  /** The rotation lock, exclusively, until the transaction ends (PostgreSQL; SQLite's write transaction is already exclusive). */
  async lockExclusive(): Promise<void> {
    if (this.capabilities.dialect === 'postgres') await sql`select pg_advisory_xact_lock(hashtextextended(${ROTATION_LOCK}, 0))`.execute(this.db);
  }

  /** The rotation lock, shared: checkpoint inserts never wait for each other, only for a rotation. */
  async lockShared(): Promise<void> {
    if (this.capabilities.dialect === 'postgres') await sql`select pg_advisory_xact_lock_shared(hashtextextended(${ROTATION_LOCK}, 0))`.execute(this.db);
  }

  /** Every recorded key, oldest hand-over first, the current key last. */
  async all(): Promise<RecordedKey[]> {
    const rows = await this.db.selectFrom('audit_keys').selectAll().orderBy('created_at').orderBy('key_id').execute();
    const list = rows.map((r) => recorded(r as AuditKeysTable));
    return [...list.filter((k) => k.handedOverAt !== null).sort((a, b) => a.handedOverAt! - b.handedOverAt!), ...list.filter((k) => k.handedOverAt === null)];
  }

  async get(keyId: string): Promise<RecordedKey | undefined> {
    const row = await this.db.selectFrom('audit_keys').selectAll().where('key_id', '=', keyId).executeTakeFirst();
    return row && recorded(row as AuditKeysTable);
  }

  /** The current keys (one, unless the table was edited). */
  async current(): Promise<RecordedKey[]> {
    const rows = await this.db.selectFrom('audit_keys').selectAll().where('handover', 'is', null).execute();
    return rows.map((r) => recorded(r as AuditKeysTable));
  }

  /** Records a key; false if the id is already recorded (a key is never recorded twice: never handed back to). */
  async insert(keyId: string, publicKey: string, createdAt: number): Promise<boolean> {
    const result = await this.db
      .insertInto('audit_keys')
      .values({ key_id: keyId, public_key: publicKey, handed_over_at: null, handover: null, created_at: createdAt })
      .onConflict((oc) => oc.column('key_id').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  /** The compare-and-set: retires `handover.fromKeyId` only if it is still current; false otherwise. */
  async retire(handover: SignedHandover): Promise<boolean> {
    const result = await this.db
      .updateTable('audit_keys')
      .set({ handed_over_at: handover.treeSize, handover: JSON.stringify(handover) })
      .where('key_id', '=', handover.fromKeyId)
      .where('handover', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** The trail's checkpoint origin, or undefined before the first start that records one. */
  async origin(): Promise<string | undefined> {
    const row = await this.db.selectFrom('audit_origin').select('origin').where('id', '=', 1).executeTakeFirst();
    return row?.origin;
  }

  /** Records the origin unless one is recorded; returns the one that is. */
  async keepOrigin(origin: string, createdAt: number): Promise<string> {
    await this.db.insertInto('audit_origin').values({ id: 1, origin, created_at: createdAt }).onConflict((oc) => oc.column('id').doNothing()).execute();
    return (await this.origin())!;
  }
}
