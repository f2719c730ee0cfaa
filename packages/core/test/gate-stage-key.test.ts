/** Votes count towards the stage they were cast for, by its identity, not its index (review finding 3). */
import { describe, expect, it } from 'vitest';
import { stageKeyOf, stageProgressOf, type ApprovalStage, type Vote } from '../src/index.ts';

const lead: ApprovalStage = { count: 2, role: 'lead', label: 'lead' };
const director: ApprovalStage = { count: 1, role: 'director', label: 'director' };
const vote = (stage: number, stageKey: string | null | undefined): Vote => ({
  reviewer: { type: 'operator', id: 'op_a', name: 'a' },
  verdict: 'approve',
  reason: null,
  args: null,
  alternative: null,
  payloadKey: 'k',
  stage,
  ...(stageKey !== undefined ? { stageKey } : {}),
  at: '2026-01-01T00:00:00.000Z',
});

describe('stageProgressOf by stage identity', () => {
  it("a lead's vote at index 0 does not count once index 0 is a director stage (the policy was reloaded)", () => {
    expect(stageProgressOf([director, lead], [vote(0, stageKeyOf(lead))])).toEqual([0, 0]);
  });
  it('still counts when the same stage only changed its count or label', () => {
    expect(stageProgressOf([{ ...lead, count: 3, label: 'two leads' }], [vote(0, stageKeyOf(lead))])).toEqual([1]);
  });
  it('a stored vote without a stage key counts towards nothing (fail closed); an in-memory one by index', () => {
    expect(stageProgressOf([lead], [vote(0, null)])).toEqual([0]);
    expect(stageProgressOf([lead], [vote(0, undefined)])).toEqual([1]);
  });
  it('named operators and groups are part of the identity', () => {
    const named: ApprovalStage = { count: 1, operators: ['alice'], label: 'alice' };
    expect(stageProgressOf([{ ...named, operators: ['mallory'] }], [vote(0, stageKeyOf(named))])).toEqual([0]);
    const group: ApprovalStage = { count: 1, group: 'sre', label: 'sre' };
    expect(stageProgressOf([{ ...group, group: 'ops' }], [vote(0, stageKeyOf(group))])).toEqual([0]);
  });
});
