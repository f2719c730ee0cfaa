/**
 * How a level's `operators:` entries name people (issue 18 review): ids and names are different
 * namespaces. An `op_…` entry is an operator id and matches only that id; any other entry is a
 * name and matches only that name. And how a per-agent SLA counts against a final authority.
 */
import { describe, expect, it } from 'vitest';
import {
  isEligibleForStage,
  namesOperator,
  overlayBaselines,
  parsePolicy,
  validateAgentConfig,
  weakens,
  withAgentOverlay,
  type AgentConfig,
  type Policy,
  type Reviewer,
} from '../src/index.ts';
import { stageEligible } from '../src/gate/eligibility.ts';

const ID = 'op_01jd0000000000000000000cfo';
const cfo: Reviewer = { id: ID, name: 'cfo', roles: ['reviewer'], groups: [] };
const impostor: Reviewer = { id: 'op_01jd00000000000000000000xx', name: ID, roles: ['reviewer'], groups: [] };
const namedLikeName: Reviewer = { id: 'op_01jd00000000000000000000yy', name: 'op', roles: ['reviewer'], groups: [] };

describe('namesOperator: an id entry matches only that id, a name entry only that name', () => {
  it('an id entry', () => {
    expect(namesOperator(ID, cfo)).toBe(true);
    expect(namesOperator(ID, impostor)).toBe(false);
  });
  it('a name entry', () => {
    expect(namesOperator('cfo', cfo)).toBe(true);
    expect(namesOperator('cfo', { id: 'cfo', name: 'someone' })).toBe(false); // a name never matches an id field
    expect(namesOperator('op', namedLikeName)).toBe(true);
    expect(namesOperator('op_', namedLikeName)).toBe(false);
  });
  it('an approval stage that names an operator by id is not signed by an operator named like that id', () => {
    const stage = { count: 1, label: 'the CFO', operators: [ID] };
    expect(isEligibleForStage(cfo, stage)).toBe(true);
    expect(isEligibleForStage(impostor, stage)).toBe(false);
  });
  it('a reassignment to an id-shaped assignee is not taken by an operator named like it', () => {
    const esc = { level: 1, startLevel: 1, levelRole: 'reviewer' as const, assignee: { operator: ID, stage: 0 }, extended: false };
    const stage = { count: 1, label: '1 lead', role: 'lead' as const };
    expect(stageEligible({ ...cfo, roles: ['lead'] }, stage, 0, esc)).toBe(true);
    expect(stageEligible({ ...impostor, roles: ['reviewer'] }, { count: 1, label: '1 reviewer' }, 0, { ...esc, levelRole: null })).toBe(true); // any reviewer may sign a generic stage anyway
    expect(stageEligible({ ...impostor, roles: ['lead'] }, stage, 0, { ...esc, levelRole: null })).toBe(true); // a lead meets the stage's own role
    expect(stageEligible({ ...impostor, roles: ['reviewer'] }, stage, 0, { ...esc, levelRole: null })).toBe(false); // the assignment is not theirs
    expect(stageEligible({ ...cfo, roles: ['reviewer'] }, stage, 0, { ...esc, levelRole: null })).toBe(false); // a reassignment gives no signing power beyond the role
  });
});

describe('weakens: a shorter SLA is a loosening only when it hurries someone deciding alone', () => {
  const AGENT = 'bot';
  function policy(yaml: string): Policy {
    const r = parsePolicy(yaml);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    return r.policy;
  }
  const config = (raw: unknown): AgentConfig => {
    const r = validateAgentConfig(AGENT, raw);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    return r.config;
  };
  const FA = policy(`
levels:
  high: { sla: 1h }
escalation:
  levels:
    - { role: lead, after: sla }
    - { operators: [cfo], after: 30m, finalAuthority: true }
`);
  const PLAIN = policy(`
levels:
  high: { sla: 1h }
escalation:
  levels:
    - { role: lead, after: sla }
    - { role: manager, after: 30m }
`);
  const keys = (file: Policy, before: unknown, after: unknown) => {
    const b = config(before);
    const a = config(after);
    return weakens(withAgentOverlay(file, AGENT, b, overlayBaselines(file, AGENT, b)), withAgentOverlay(file, AGENT, a, overlayBaselines(file, AGENT, a)), AGENT).map((l) => l.key);
  };
  it('with a final authority: shorter loosens (one person sooner), as longer always does (escalation later); the same SLA is no change', () => {
    expect(keys(FA, {}, { levels: { high: { sla: '10m' } } })).toEqual(['levels.high.sla']);
    expect(keys(FA, {}, { levels: { high: { sla: '2h' } } })).toEqual(['levels.high.sla']);
    expect(keys(FA, {}, { levels: { high: { sla: '1h' } } })).toEqual([]);
  });
  it('without one (and onFinalTimeout: reject), a shorter SLA is a tightening', () => {
    expect(keys(PLAIN, {}, { levels: { high: { sla: '10m' } } })).toEqual([]);
    expect(keys(PLAIN, {}, { levels: { high: { sla: '2h' } } })).toEqual(['levels.high.sla']);
  });
});
