/** Which errors mean "the database is away" (503 STORE_UNAVAILABLE) and which do not (store/unavailable.ts). */
import { describe, expect, it } from 'vitest';
import SqliteDatabase from 'better-sqlite3';
import { CountersignError } from '@countersign/core';
import { toCountersignError } from '../src/http/errors.ts';
import { describeUnavailable, isStoreUnavailable } from '../src/store/unavailable.ts';

const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe('isStoreUnavailable', () => {
  it('says yes to a lost or refused database, on both dialects', () => {
    for (const err of [
      withCode('57P01', 'terminating connection due to administrator command'),
      withCode('57P03', 'the database system is starting up'),
      withCode('08006'),
      withCode('53300', 'sorry, too many clients already'),
      withCode('25006', 'cannot execute INSERT in a read-only transaction'),
      withCode('ECONNREFUSED'),
      Object.assign(new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')]), {}),
      new Error('Connection terminated unexpectedly'),
      new Error('timeout exceeded when trying to connect'),
      new Error('Client has encountered a connection error and is not queryable'),
      withCode('SQLITE_BUSY', 'database is locked'),
      withCode('SQLITE_READONLY_DBMOVED'),
      withCode('SQLITE_IOERR_WRITE'),
      withCode('SQLITE_FULL'),
      new Error('wrapped', { cause: withCode('57P01') }),
    ]) {
      expect(isStoreUnavailable(err), String((err as { code?: string }).code ?? (err as Error).message)).toBe(true);
    }
  });

  it('says no to bad statements, conflicts and bugs (they stay 4xx/500, never a misleading 503)', () => {
    for (const err of [
      withCode('23505', 'duplicate key value violates unique constraint'),
      withCode('40001', 'could not serialize access'),
      withCode('42P01', 'relation does not exist'),
      withCode('SQLITE_CONSTRAINT_UNIQUE'),
      new TypeError('cannot read properties of undefined'),
      new CountersignError('VALIDATION_FAILED', 'x'),
      null,
      'ECONNREFUSED',
    ]) {
      expect(isStoreUnavailable(err)).toBe(false);
    }
  });

  it('a real SQLite lock error from better-sqlite3 maps to 503 STORE_UNAVAILABLE, with no connection string in the log', () => {
    const a = new SqliteDatabase(':memory:');
    let caught: unknown;
    try {
      a.prepare('select * from nowhere').all();
    } catch (err) {
      caught = err;
    }
    expect(isStoreUnavailable(caught)).toBe(false); // SQLITE_ERROR: a bug, not an outage
    a.close();
    const logs: string[] = [];
    const mapped = toCountersignError(withCode('ECONNREFUSED', 'connect ECONNREFUSED postgres://admin:secret@db:5432/x'), (l) => logs.push(l));
    expect(mapped.code).toBe('STORE_UNAVAILABLE');
    expect(logs.join('\n')).not.toContain('secret');
    expect(describeUnavailable(withCode('57P01', 'terminating\nsecond line'))).toBe('57P01: terminating');
  });
});
