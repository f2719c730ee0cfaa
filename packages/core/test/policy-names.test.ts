/** Action names in one normal form (issue 12, finding 6): the table, linear time, and the policy applying it everywhere. */
import { describe, expect, it } from 'vitest';
import { EMPTY_HISTORY, checkArgs, evaluate, parsePolicy, type Policy } from '../src/policy/index.ts';
import { actionMatchesKeyword } from '../src/policy/rules.ts';
import { normalizeActionName } from '../src/policy/names.ts';
import { CreateRequestBody, type CreateRequestBody as Body } from '../src/schemas.ts';

const NOW = new Date('2024-07-10T12:00:00Z');

function policy(yaml: string): Policy {
  const p = parsePolicy(yaml);
  if (!p.ok) throw new Error(JSON.stringify(p.errors));
  return p.policy;
}
const run = (body: Body, p: Policy, agent = 'soc-bot') => evaluate({ ...CreateRequestBody.parse(body), agent }, p, EMPTY_HISTORY, NOW);

/** The table in names.ts and in docs: written → normal form. */
const TABLE: [string, string][] = [
  ['wire_transfer', 'wire_transfer'],
  ['Wire_Transfer', 'wire_transfer'],
  ['WIRE_TRANSFER', 'wire_transfer'],
  ['wire-transfer', 'wire_transfer'],
  ['Wire-Transfer', 'wire_transfer'],
  ['wire transfer', 'wire_transfer'],
  ['wireTransfer', 'wire_transfer'],
  ['WireTransfer', 'wire_transfer'],
  ['wire_Transfer', 'wire_transfer'],
  ['HTTPRequest', 'http_request'],
  ['httpRequest', 'http_request'],
  ['getHTTP2Response', 'get_http2_response'],
  ['s3Upload', 's3_upload'],
  ['github__createIssue', 'github__create_issue'],
  ['my-server__delete_repo', 'my_server__delete_repo'],
  ['db.dropTable', 'db.drop_table'],
  ['k8s:deletePod', 'k8s:delete_pod'],
  ['a', 'a'],
  ['A', 'a'],
  ['ABC', 'abc'],
];

describe('normalizeActionName', () => {
  it.each(TABLE)('%s → %s', (written, normal) => {
    expect(normalizeActionName(written)).toBe(normal);
  });

  it('is idempotent on every example', () => {
    for (const [, normal] of TABLE) expect(normalizeActionName(normal)).toBe(normal);
  });

  it('takes linear time on hostile input (acronym runs, mixed case, separators)', () => {
    // 200,000 characters of each shape. Linear work takes milliseconds (under a second even on a
    // loaded shared machine); a quadratic pass (or a backtracking regex) needs ~4·10^10 steps:
    // minutes. The budget is generous for the shared machine and still fails a super-linear one.
    for (const unit of ['A', 'aB', 'AAa', '-_', 'a1B']) {
      const hostile = unit.repeat(Math.ceil(200_000 / unit.length));
      const t = performance.now();
      normalizeActionName(hostile);
      actionMatchesKeyword(hostile, 'delete');
      expect(performance.now() - t, unit).toBeLessThan(10_000);
    }
  });
});

describe('the policy compares names in normal form', () => {
  const p = policy(`
actions:
  wire_transfer: { weight: 0.8, args: { to: { type: string, required: true } }, strictArgs: true }
requireApproval: [sendExternalEmail]
rules:
  - name: no-wires
    when: { action: Wire-Transfer }
    then: { block: true }
agents:
  billing-bot: { block: [exportCustomers], requireApproval: [refund_payment] }
`);

  it.each(['wire_transfer', 'Wire_Transfer', 'WIRE_TRANSFER', 'wire-transfer', 'wireTransfer', 'WireTransfer'])('rule action: %s is blocked', (action) => {
    const a = run({ action, args: { to: 'x' }, confidence: 0.99 }, p);
    expect(a.route).toBe('block');
    expect(a.matchedRules.map((m) => m.name)).toContain('no-wires');
  });

  it('per-agent block and requireApproval lists, and the root requireApproval', () => {
    expect(run({ action: 'EXPORT_CUSTOMERS', confidence: 0.99 }, p, 'billing-bot').route).toBe('block');
    expect(run({ action: 'export-customers', confidence: 0.99 }, p, 'billing-bot').route).toBe('block');
    expect(run({ action: 'refundPayment', confidence: 0.99 }, p, 'billing-bot').route).toBe('review');
    expect(run({ action: 'send_external_email', confidence: 0.99 }, p).route).toBe('review');
    expect(run({ action: 'Send-External-Email', confidence: 0.99 }, p).route).toBe('review');
  });

  it('action traits (weight, argument rules) are found under any spelling', () => {
    expect(p.actions.byName).toHaveProperty('wire_transfer');
    expect(checkArgs(p, 'WireTransfer', { to: 'x', memo: 'y' })).toEqual([expect.stringMatching(/memo/)]);
    expect(checkArgs(p, 'wire-transfer', {})).toEqual([expect.stringMatching(/to/)]);
    expect(run({ action: 'WIRE_TRANSFER', args: { to: 'x' } }, p).riskScore).toBe(run({ action: 'wire_transfer', args: { to: 'x' } }, p).riskScore);
  });

  it('actionMatches keywords see respellings too', () => {
    expect(actionMatchesKeyword('BULK-DELETE', 'delete')).toBe(true);
    expect(actionMatchesKeyword('bulkDelete', 'Delete')).toBe(true);
    expect(actionMatchesKeyword('undelete', 'delete')).toBe(false);
    expect(run({ action: 'DROP_TABLE', confidence: 0.99 }, p).matchedRules.map((m) => m.name)).toContain('dangerous-action');
  });

  it('refuses two action keys with one normal form, naming both', () => {
    const r = parsePolicy('actions:\n  wire_transfer: { weight: 0.8 }\n  wireTransfer: { weight: 0.1 }\n');
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const e = r.errors.find((x) => x.path === 'actions.wireTransfer');
    expect(e?.message).toMatch(/"wireTransfer" and "wire_transfer"/);
    // Also against a default key: a respelled override would otherwise be a second action.
    const d = parsePolicy('actions:\n  Block-IP: { weight: 0.1 }\n');
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.errors.map((x) => x.message).join()).toMatch(/"Block-IP" and "block_ip"/);
  });
});
