import { describe, expect, it } from 'vitest';
import { checkArgs, parsePolicy, type Policy, type PolicyResult } from '../src/index.ts';

function policyOf(r: PolicyResult): Policy {
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

const POLICY = policyOf(
  parsePolicy(`
actions:
  isolate_host:
    strictArgs: true
    args:
      host: { type: string, required: true, pattern: "^[a-z0-9-]+$", maxLength: 63 }
      minutes: { type: integer, minimum: 1, maximum: 1440 }
      mode: { type: string, enum: [network, full] }
      notify: { type: boolean }
  wire_transfer:
    args:
      amount: { type: number, required: true, minimum: 0 }
      tags: { type: array, maxLength: 3 }
`),
);

describe('checkArgs', () => {
  it('accepts args that fit, and anything for an action without rules', () => {
    expect(checkArgs(POLICY, 'isolate_host', { host: 'ws-042', minutes: 30, mode: 'network', notify: true })).toEqual([]);
    expect(checkArgs(POLICY, 'wire_transfer', { amount: 12.5, anything: { else: 1 } })).toEqual([]); // not strict
    expect(checkArgs(POLICY, 'block_ip', { whatever: [1, 2, 3] })).toEqual([]);
  });

  it('names every problem by key: missing, wrong type, range, enum, pattern, length, unknown keys', () => {
    expect(checkArgs(POLICY, 'isolate_host', { minutes: 0, mode: 'partial', notify: 'yes', extra: 1 })).toEqual([
      'host: required by the policy for isolate_host',
      'minutes: must be at least 1',
      'mode: must be one of "network", "full"',
      'notify: expected boolean, got string',
      'extra: not an argument of isolate_host (the policy lists host, minutes, mode, notify)',
    ]);
    expect(checkArgs(POLICY, 'isolate_host', { host: 'WS 042; rm -rf /', minutes: 1.5 })).toEqual([
      'host: does not match ^[a-z0-9-]+$',
      'minutes: expected integer, got number',
    ]);
    expect(checkArgs(POLICY, 'isolate_host', { host: 'a'.repeat(64) })).toEqual(['host: longer than 63']);
    expect(checkArgs(POLICY, 'wire_transfer', { amount: -1, tags: ['a', 'b', 'c', 'd'] })).toEqual(['amount: must be at least 0', 'tags: longer than 3']);
    expect(checkArgs(POLICY, 'wire_transfer', { amount: null })).toEqual(['amount: expected number, got null']);
  });

  it('refuses a pattern that can backtrack exponentially, and does not run a pattern on very long input', () => {
    const r = parsePolicy('actions:\n  a: { weight: 0.3, args: { s: { type: string, pattern: "^(a+)+$" } } }');
    expect(r.ok ? [] : r.errors).toEqual([{ path: 'actions.a.args.s.pattern', message: expect.stringContaining('exponential time') }]);
    expect(checkArgs(policyOf(parsePolicy('actions:\n  a: { weight: 0.3, args: { s: { type: string, pattern: "^x+$" } } }')), 'a', { s: 'x'.repeat(1_001) })).toEqual([
      's: too long (over 1000 characters) to check against its pattern',
    ]);
  });

  it('a policy with bad rules is refused, naming each key', () => {
    const r = parsePolicy(`
actions:
  isolate_host:
    args:
      host: { type: text }
      port: { type: integer, pattern: "^[0-9]+$" }
      name: { type: string, pattern: "([a-z" }
      label: { type: string, pattern: "^([a-z0-9]+-?)+$" }
      size: { type: string, minimum: 1 }
      flag: { type: boolean, maxLength: 2 }
      other: { type: string, color: red }
`);
    expect(r.ok).toBe(false);
    const paths = r.ok ? [] : r.errors.map((e) => e.path);
    expect(paths).toEqual(
      expect.arrayContaining([
        'actions.isolate_host.args.host.type',
        'actions.isolate_host.args.port.pattern',
        'actions.isolate_host.args.name.pattern',
        'actions.isolate_host.args.label.pattern',
        'actions.isolate_host.args.size.minimum',
        'actions.isolate_host.args.flag.maxLength',
        'actions.isolate_host.args.other.color',
      ]),
    );
  });
});
