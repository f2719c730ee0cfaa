/**
 * Red-team review of SIEM forwarding (issue 20): the forwarder redacts each entry's data again
 * with the trail's redactor, on the claim that redaction is idempotent on redacted data (README:
 * "the entry as GET /v1/audit shows it … redacted values stay redacted"). It is idempotent for the
 * patterns (an email in free text), but not for the redacted *fields* (`email`, `ip_address`,
 * `user_id`, `phone_number` and their camelCase, or COUNTERSIGN_AUDIT_REDACT_FIELDS): core's
 * redactor tokenizes a field's value whatever it is, so the stored token `[email:T]` goes out as
 * `[email:HMAC("[email:T]")]`. The SIEM then holds tokens that match neither the audit API, nor an
 * export, nor `redactionToken(kind, value)` (the documented way to look a redacted value up), so
 * the SOC cannot correlate a SIEM event with the trail. Field-named values reach the trail through
 * agent and reviewer data (modified arguments, slicing alerts' argument keys).
 *
 * Fails on the reviewed branch; passes once forwarding sends the stored data as stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { forwardEntry } from '../src/forwarding/format.ts';
import type { AuditLogTable } from '../src/store/schema.ts';
import { sqliteDatabase, type TestDatabase } from './support/databases.ts';
import { openTestEngine, type TestEngine } from './support/engine.ts';

describe('review: forwarded data is the stored (redacted) data, token for token', () => {
  let database: TestDatabase;
  let t: TestEngine;
  beforeAll(async () => {
    database = sqliteDatabase();
    t = await openTestEngine(database.url);
  }, 60_000);
  afterAll(async () => {
    await t?.engine.close();
    await database?.drop();
  });

  it('sends a redacted field with the token the trail stored (and redactionToken gives), not a token of that token', () => {
    const trail = t.engine.trail;
    // What the audit writer stores (audit/writer.ts: JSON.stringify(redact(data))), for data naming a redacted field.
    const stored = trail.redact({ modifiedArgs: { email: 'bob@example.com', note: 'mail carol@example.com' } }) as { modifiedArgs: { email: string; note: string } };
    expect(stored.modifiedArgs.email).toBe(trail.redactionToken('email', 'bob@example.com')); // the control: stored as its token
    const row: AuditLogTable = { seq: 9, entry_id: 9, at: Date.parse('2025-03-01T12:00:00Z'), type: 'reviewed', request_id: 'req_1', actor_type: 'operator', actor_id: 'op_1', actor_name: 'rae', data: JSON.stringify(stored) };
    const forwarded = forwardEntry(row, (d) => trail.redact(d)).data as { modifiedArgs: { email: string; note: string } };
    expect(forwarded.modifiedArgs.note).toBe(stored.modifiedArgs.note); // patterns are idempotent (holds)
    expect(forwarded.modifiedArgs.email).toBe(stored.modifiedArgs.email); // fields are not: the defect
    expect(forwarded).toEqual(stored);
  });
});
