/**
 * Red-team review of the escalation branch (issue 18): final authority lets ONE person override
 * a quorum. Each test here fails for a defect found in review and passes once it is fixed.
 */
import { describe, expect, it } from 'vitest';
import {
  EMPTY_HISTORY,
  agentPolicy,
  evaluate,
  finalAuthorityOf,
  isFinalAuthority,
  onDue,
  overlayBaselines,
  parsePolicy,
  startEscalation,
  validateAgentConfig,
  weakens,
  withAgentOverlay,
  type AgentConfig,
  type EscalationState,
  type Policy,
  type Reviewer,
} from '../src/index.ts';
import { Assessment as AssessmentSchema, CreateRequestBody } from '../src/schemas.ts';

const T0 = Date.parse('2026-11-21T10:00:00Z');
const AGENT = 'bot';

function policy(yaml: string): Policy {
  const r = parsePolicy(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return r.policy;
}

// The CFO is named by operator id (README: `operators` are "ids or names").
const CFO_ID = 'op_01JD0000000000000000000CFO';
const CHAIN = policy(`
levels:
  high: { sla: 10m }
escalation:
  levels:
    - { role: lead, after: sla }
    - { operators: [${CFO_ID}], after: 30m, finalAuthority: true }
`);

function atFinal(p: Policy): EscalationState {
  const a = AssessmentSchema.parse(evaluate({ ...CreateRequestBody.parse({ action: 'isolate_host', confidence: 0.82 }), agent: AGENT }, p, EMPTY_HISTORY, new Date(T0)));
  let s = startEscalation(p, a, T0)!;
  for (;;) {
    const d = onDue(s, p, s.dueAt);
    if (d.type !== 'escalate') return s;
    s = d.state;
  }
}

describe('review: who counts as a named final authority', () => {
  it('an operator whose NAME is the CFO’s operator id is not the CFO (ids and names are different namespaces)', () => {
    const s = atFinal(CHAIN);
    const fa = finalAuthorityOf(s, CHAIN);
    expect(fa).not.toBeNull();
    const realCfo: Reviewer = { id: CFO_ID, name: 'cfo', roles: ['reviewer'], groups: [] };
    expect(isFinalAuthority(realCfo, fa)).toBe(true);
    // POST /v1/operators accepts any name matching /^[A-Za-z0-9_.@-]+$/, so an admin can create an
    // operator literally named "op_01JD…CFO" (names are unique among names, not among ids).
    // isFinalAuthority compares every entry with both reviewer.id and reviewer.name, so that
    // impostor decides alone as the CFO.
    const impostor: Reviewer = { id: 'op_01JD00000000000000000000XX', name: CFO_ID, roles: ['reviewer'], groups: [] };
    expect(isFinalAuthority(impostor, fa)).toBe(false);
  });
});

describe('review: an agent overlay that hurries requests to the final authority needs a second admin', () => {
  // Level 1 waits the SLA, then the final authority (one person) decides alone.
  const FILE = policy(`
levels:
  high: { sla: 1h }
escalation:
  levels:
    - { role: lead, after: sla }
    - { operators: [cfo], after: 30m, finalAuthority: true }
`);
  const ov = (c: AgentConfig) => withAgentOverlay(FILE, AGENT, c, overlayBaselines(FILE, AGENT, c));
  const config = (raw: unknown): AgentConfig => {
    const r = validateAgentConfig(AGENT, raw);
    if (!r.ok) throw new Error(JSON.stringify(r.errors));
    return r.config;
  };

  it('a shorter levels.high.sla (one admin, `agents config set`) brings the single-approver level sooner: it is a loosening', () => {
    const before = ov(config({}));
    const after = ov(config({ levels: { high: { sla: '1s' } } }));
    // The overlay really does move the final authority from 1h to 1s after creation (the
    // server judges a request by agentPolicy: file + overlay, engine.ts createRequest).
    const short = config({ levels: { high: { sla: '1s' } } });
    expect(atFinal(agentPolicy(FILE, AGENT, short, overlayBaselines(FILE, AGENT, short))).enteredAt - T0).toBe(1000);
    expect(atFinal(agentPolicy(FILE, AGENT, config({}), {})).enteredAt - T0).toBe(3_600_000);
    // weakens() already treats a shorter SLA as a loosening when onFinalTimeout is approve
    // ("silence approves sooner"); with finalAuthority a shorter SLA likewise swaps the level-1
    // quorum for one person sooner, yet it is applied as a tightening, without four-eyes.
    expect(weakens(before, after, AGENT).map((l) => l.key)).toContain('levels.high.sla');
  });
});
