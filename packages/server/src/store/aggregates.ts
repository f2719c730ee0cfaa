/**
 * Aggregate reviews' tables (`onSlicing: aggregate`): a collection gathers an agent's requests
 * for `guard.slicing.collect` (one open collection per agent at a time); when it closes, its
 * still-pending members are put together into one aggregate review request (`bundle_id`).
 * While a request is a member, it is not approved on its own.
 */
import { AGGREGATE_ACTION } from '@countersign/core';
import type { Kysely, Transaction } from 'kysely';
import type { Capabilities } from './connect.ts';
import type { Database } from './schema.ts';

export interface AggregateCollectionsTable {
  id: string;
  agent_id: string;
  /** When the slicing hold it belongs to began: the collections of one hold share it. */
  hold_since: number;
  closes_at: number;
  /** JSON array of the slicing alert types that started the hold. */
  alerts: string;
  closed_at: number | null;
  /** Once closed: how many requests it put together, and their summed value (null if none stated one). */
  members: number | null;
  value: number | null;
  created_at: number;
}

export interface AggregateMembersTable {
  request_id: string;
  collection_id: string;
  /** The aggregate review request, once the collection closed; null while it collects. */
  bundle_id: string | null;
  created_at: number;
}


type Db = Kysely<Database> | Transaction<Database>;

export class AggregateQueries {
  constructor(
    private readonly db: Db,
    private readonly capabilities: Capabilities,
  ) {}

  /**
   * The agent's open collection. With `lock` (PostgreSQL), its row stays locked until the
   * transaction ends, so a request joining it and the timer closing it take turns.
   */
  async openCollection(agentId: string, lock = false): Promise<AggregateCollectionsTable | undefined> {
    let query = this.db.selectFrom('aggregate_collections').selectAll().where('agent_id', '=', agentId).where('closed_at', 'is', null);
    if (lock && this.capabilities.rowLocks) query = query.forUpdate();
    return query.executeTakeFirst();
  }

  async collection(id: string, lock = false): Promise<AggregateCollectionsTable | undefined> {
    let query = this.db.selectFrom('aggregate_collections').selectAll().where('id', '=', id);
    if (lock && this.capabilities.rowLocks) query = query.forUpdate();
    return query.executeTakeFirst();
  }

  /** Opens a collection unless the agent already has an open one (then nothing happens: read that one). */
  async openCollectionIfNone(row: AggregateCollectionsTable): Promise<void> {
    await this.db
      .insertInto('aggregate_collections')
      .values(row)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }

  async closeCollection(id: string, at: number, members: number, value: number | null): Promise<void> {
    await this.db.updateTable('aggregate_collections').set({ closed_at: at, members, value }).where('id', '=', id).execute();
  }

  /** What the agent's closed collections of this hold put together: requests, and their summed value. */
  async earlierInHold(agentId: string, holdSince: number): Promise<{ count: number; value: number | null }> {
    const rows = await this.db
      .selectFrom('aggregate_collections')
      .select(['members', 'value'])
      .where('agent_id', '=', agentId)
      .where('hold_since', '=', holdSince)
      .where('closed_at', 'is not', null)
      .execute();
    const values = rows.map((r) => r.value).filter((v): v is number => v !== null);
    return { count: rows.reduce((n, r) => n + Number(r.members ?? 0), 0), value: values.length > 0 ? values.reduce((a, v) => a + Number(v), 0) : null };
  }

  async park(rows: readonly AggregateMembersTable[]): Promise<void> {
    if (rows.length > 0) await this.db.insertInto('aggregate_members').values([...rows]).execute();
  }

  async unpark(requestId: string): Promise<void> {
    await this.db.deleteFrom('aggregate_members').where('request_id', '=', requestId).execute();
  }

  /** The collection (and aggregate, once put together) a request belongs to. */
  async membership(requestId: string): Promise<AggregateMembersTable | undefined> {
    return this.db.selectFrom('aggregate_members').selectAll().where('request_id', '=', requestId).executeTakeFirst();
  }

  /** Which of these requests belong to an aggregate review (collecting or put together). */
  async membersAmong(requestIds: readonly string[]): Promise<Set<string>> {
    if (requestIds.length === 0) return new Set();
    const rows = await this.db.selectFrom('aggregate_members').select('request_id').where('request_id', 'in', [...requestIds]).execute();
    return new Set(rows.map((r) => r.request_id));
  }

  /** Members of a collection not yet put into an aggregate, oldest first. */
  async collecting(collectionId: string): Promise<string[]> {
    const rows = await this.db
      .selectFrom('aggregate_members')
      .select('request_id')
      .where('collection_id', '=', collectionId)
      .where('bundle_id', 'is', null)
      .orderBy('created_at')
      .orderBy('request_id')
      .execute();
    return rows.map((r) => r.request_id);
  }

  async members(bundleId: string): Promise<string[]> {
    const rows = await this.db.selectFrom('aggregate_members').select('request_id').where('bundle_id', '=', bundleId).orderBy('created_at').orderBy('request_id').execute();
    return rows.map((r) => r.request_id);
  }

  async bundle(requestIds: readonly string[], bundleId: string): Promise<void> {
    if (requestIds.length > 0) await this.db.updateTable('aggregate_members').set({ bundle_id: bundleId }).where('request_id', 'in', [...requestIds]).execute();
  }

  /** An agent's pending requests since `since` that belong to no collection (aggregate reviews themselves excluded). */
  async pendingLoose(agentId: string, since: number, limit = 1_000): Promise<string[]> {
    const rows = await this.db
      .selectFrom('requests')
      .leftJoin('aggregate_members', 'aggregate_members.request_id', 'requests.id')
      .select('requests.id')
      .where('requests.agent_id', '=', agentId)
      .where('requests.status', '=', 'pending')
      .where('requests.created_at', '>=', since)
      .where('requests.action', '!=', AGGREGATE_ACTION)
      .where('aggregate_members.request_id', 'is', null)
      .orderBy('requests.created_at')
      .limit(limit)
      .execute();
    return rows.map((r) => r.id);
  }
}
