/**
 * Red-team review of SIEM forwarding (issue 20): the forwarder redacts each entry's data again
 * with the trail's redactor, on the claim that redaction is idempotent on redacted data (README:
 * "the entry as GET /v1/audit shows it … redacted values stay redacted"). It is idempotent for the
 * patterns (an email in free text), but not for the redacted *fields* (`email`, `ip_address`,
 * `user_id`, `phone_number` and their camelCase, or COUNTERSIGN_AUDIT_REDACT_FIELDS): core's
 * redactor tokenizes a field's value whatever it is, so the stored token `[email:T]` goes out as
 * `[email:HMAC("[email:T]")]`. The SIEM then holds tokens that match neither the audit API, nor an
 * export, nor `redactionToken(kind, value)` (the documented way to look a redacted value up), so
 * the SOC cannot correlate a SIEM event with the trail. Reached whenever a stored field is one of
 * the redacted names: in particular with COUNTERSIGN_AUDIT_REDACT_FIELDS naming a field the trail
 * holds on every decision (`reason`, say, to keep reviewers' and agents' free text out of the SIEM).
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
    // As runtime.ts does for COUNTERSIGN_AUDIT_REDACT_FIELDS=reason,email,…
    trail.setRedactedFields(['reason', 'email', 'ip_address', 'ipAddress', 'user_id', 'userId', 'phone_number', 'phoneNumber']);
    // What the audit writer stores for a rejection (audit/writer.ts: JSON.stringify(redact(data))).
    const stored = trail.redact({ decidedBy: 'reviewer', reason: 'wrong customer', note: 'mail carol@example.com' }) as { reason: string; note: string };
    expect(stored.reason).toBe(trail.redactionToken('reason', 'wrong customer')); // the control: stored as its token
    const row: AuditLogTable = { seq: 9, entry_id: 9, at: Date.parse('2025-03-01T12:00:00Z'), type: 'rejected', request_id: 'req_1', actor_type: 'operator', actor_id: 'op_1', actor_name: 'rae', data: JSON.stringify(stored) };
    const forwarded = forwardEntry(row, (d) => trail.redact(d)).data as { reason: string; note: string };
    expect(forwarded.note).toBe(stored.note); // patterns are idempotent (holds)
    expect(forwarded.reason).toBe(stored.reason); // fields are not: the defect
    expect(forwarded).toEqual(stored);
  });
});
