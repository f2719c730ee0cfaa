/**
 * Governance pre-checks, the pure part (core precheck/): the policy section, what results come to
 * under the current validators (F1: a result under another identity is no result), and reading a
 * validator's answer, failing closed.
 */
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_POLICY_YAML,
  MAX_PRECHECK_REASON_CHARS,
  aggregateMemberPrecheck,
  applicablePrechecks,
  cleanReason,
  evaluate,
  EMPTY_HISTORY,
  parsePolicy,
  precheckEffects,
  precheckIdentityText,
  precheckOutcomes,
  precheckRequestBody,
  precheckWireBody,
  readValidatorAnswer,
  strictJson,
  type PrecheckConfig,
  type PrecheckResult,
} from '../src/index.ts';

function policyWith(prechecks: string) {
  return parsePolicy(`${DEFAULT_POLICY_YAML}\nprechecks:\n${prechecks}`);
}

function configs(yaml: string): PrecheckConfig[] {
  const r = policyWith(yaml);
  if (!r.ok) throw new Error(JSON.stringify(r.errors));
  return [...r.policy.prechecks];
}

const id = (c: PrecheckConfig) => precheckIdentityText(c);
const json = (body: string, status = 200, contentType: string | null = 'application/json') => ({ status, contentType, body, truncated: false });

describe('the prechecks: section', () => {
  it('resolves defaults (onError deny, raiseTo high, 2 s) and normal-form action names', () => {
    const [c] = configs('  - { name: guardian, kind: http, url: "http://127.0.0.1:9/check", when: { actions: [Wire-Transfer] } }');
    expect(c).toMatchObject({ name: 'guardian', kind: 'http', onError: 'deny', raiseTo: 'high', timeoutMs: 2000, path: null, when: { actions: ['wire_transfer'], risk: null } });
  });

  it('names every bad key: opa without path, credentials in the URL, a duplicate name, raiseTo without onError raise, an unknown key', () => {
    const r = policyWith(`  - { name: a, kind: opa, url: "http://127.0.0.1:9" }
  - { name: b, kind: http, url: "http://user:pw@127.0.0.1:9/x" }
  - { name: b, kind: http, url: "ftp://127.0.0.1/x" }
  - { name: c, kind: http, url: "http://127.0.0.1:9", raiseTo: critical }
  - { name: d, kind: http, url: "http://127.0.0.1:9", retries: 3 }`);
    expect(r.ok).toBe(false);
    const errors = r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`).join('\n');
    expect(errors).toMatch(/prechecks\.0\.path.*opa validator needs path|prechecks\[0\]\.path.*opa validator needs path/);
    expect(errors).toMatch(/no credentials in a validator URL/);
    expect(errors).toMatch(/two validators are named b/);
    expect(errors).toMatch(/http: or https:/);
    expect(errors).toMatch(/raiseTo is the level onError: raise raises to/);
    expect(errors).toMatch(/retries/);
  });

  it('applies by action and by risk level', () => {
    const cs = configs(`  - { name: pay, kind: http, url: "http://127.0.0.1:9/a", when: { actions: [wire_money] } }
  - { name: hot, kind: http, url: "http://127.0.0.1:9/b", when: { risk: [critical] } }
  - { name: all, kind: http, url: "http://127.0.0.1:9/c" }`);
    expect(applicablePrechecks(cs, { action: 'Wire-Money', riskLevel: 'low' }).map((c) => c.name)).toEqual(['pay', 'all']);
    expect(applicablePrechecks(cs, { action: 'block_ip', riskLevel: 'critical' }).map((c) => c.name)).toEqual(['hot', 'all']);
    // Countersign's own reserved actions (aggregate reviews, admin changes) are never sent to validators.
    expect(applicablePrechecks(cs, { action: 'countersign.agent_config', riskLevel: 'critical' })).toEqual([]);
    expect(applicablePrechecks(cs, { action: 'countersign.aggregate', riskLevel: 'low' })).toEqual([]);
  });
});

describe('precheckOutcomes', () => {
  const cs = configs(`  - { name: a, kind: http, url: "http://127.0.0.1:9/a" }
  - { name: b, kind: http, url: "http://127.0.0.1:9/b", onError: raise, raiseTo: critical }
  - { name: c, kind: http, url: "http://127.0.0.1:9/c", onError: allow }`);
  const [a, b, c] = cs as [PrecheckConfig, PrecheckConfig, PrecheckConfig];
  const r = (cfg: PrecheckConfig, status: PrecheckResult['status'], extra: Partial<PrecheckResult> = {}): PrecheckResult => ({ name: cfg.name, identity: id(cfg), status, reasons: [], ...extra });

  it('allow when all allow; block when any denies; raise to the highest asked', () => {
    expect(precheckOutcomes([r(a, 'allow'), r(b, 'allow'), r(c, 'allow')], cs, id).effect).toBe('allow');
    expect(precheckOutcomes([r(a, 'deny', { reasons: ['no'] }), r(b, 'allow', { raiseTo: 'critical' }), r(c, 'allow')], cs, id).effect).toBe('block');
    const raised = precheckOutcomes([r(a, 'allow', { raiseTo: 'medium' }), r(b, 'allow', { raiseTo: 'high' }), r(c, 'allow')], cs, id);
    expect(raised).toMatchObject({ effect: 'raise', raiseTo: 'high' });
  });

  it('an error counts as its onError says: deny blocks, raise raises to raiseTo, allow allows', () => {
    expect(precheckOutcomes([r(a, 'error', { error: 'HTTP 500' }), r(b, 'allow'), r(c, 'allow')], cs, id).effect).toBe('block');
    expect(precheckOutcomes([r(a, 'allow'), r(b, 'error'), r(c, 'allow')], cs, id)).toMatchObject({ effect: 'raise', raiseTo: 'critical' });
    expect(precheckOutcomes([r(a, 'allow'), r(b, 'allow'), r(c, 'error')], cs, id).effect).toBe('allow');
  });

  it('F1: a result under another identity of the same name is no result (fails closed by onError); results for removed validators are ignored', () => {
    const [a2] = configs('  - { name: a, kind: http, url: "http://127.0.0.1:9/other" }') as [PrecheckConfig];
    expect(id(a2)).not.toBe(id(a));
    const out = precheckOutcomes([r(a, 'allow')], [a2], id);
    expect(out.effect).toBe('block');
    expect(out.verdicts[0]).toMatchObject({ name: 'a', status: 'missing', outcome: 'deny' });
    expect(precheckOutcomes([r(a, 'deny')], [], id).effect).toBe('allow');
    // onError changed, same name and URL: a new identity too.
    const [a3] = configs('  - { name: a, kind: http, url: "http://127.0.0.1:9/a", onError: allow }') as [PrecheckConfig];
    expect(id(a3)).not.toBe(id(a));
  });

  it('as evaluate() takes them: a deny blocks the request, a raise raises its risk and sends it to review', () => {
    const policy = parsePolicy(DEFAULT_POLICY_YAML);
    if (!policy.ok) throw new Error('default policy');
    const request = { action: 'block_ip', args: { ip: '203.0.113.7' }, confidence: 0.97, context: { threatScore: 0.95 }, agent: 'a' };
    const now = new Date('2026-01-01T00:00:00Z');
    expect(evaluate(request, policy.policy, EMPTY_HISTORY, now).route).toBe('auto_approve');
    const deny = precheckEffects(precheckOutcomes([r(a, 'deny', { reasons: ['not on the change calendar'] })], [a], id));
    const blocked = evaluate({ ...request, prechecks: deny }, policy.policy, EMPTY_HISTORY, now);
    expect(blocked.route).toBe('block');
    expect(blocked.matchedRules.find((m) => m.name === 'precheck:a')?.reason).toMatch(/not on the change calendar/);
    const raise = precheckEffects(precheckOutcomes([r(a, 'allow', { raiseTo: 'high' })], [a], id));
    const raised = evaluate({ ...request, prechecks: raise }, policy.policy, EMPTY_HISTORY, now);
    expect(raised).toMatchObject({ route: 'review', riskLevel: 'high' });
    // Even a raise to a level that could auto-approve goes to humans.
    const low = evaluate({ ...request, prechecks: precheckEffects(precheckOutcomes([r(a, 'allow', { raiseTo: 'low' })], [a], id)) }, policy.policy, EMPTY_HISTORY, now);
    expect(low.route).toBe('review');
  });
});

describe('reading a validator answer (fails closed)', () => {
  it('allow, deny, and a risk to raise to', () => {
    expect(readValidatorAnswer('http', json('{"allow":true,"reasons":["ok"]}'))).toEqual({ status: 'allow', reasons: ['ok'] });
    expect(readValidatorAnswer('http', json('{"allow":false,"reasons":["no"]}'))).toEqual({ status: 'deny', reasons: ['no'] });
    expect(readValidatorAnswer('http', json('{"allow":true,"reasons":[],"risk":"critical"}', 200, 'application/json; charset=utf-8'))).toEqual({ status: 'allow', reasons: [], raiseTo: 'critical' });
  });

  it('errors: non-2xx, a redirect, non-JSON content type, malformed, truncated, duplicate allow, wrong types', () => {
    const bad = (a: ReturnType<typeof json>) => readValidatorAnswer('http', a).status;
    expect(bad(json('{"allow":true,"reasons":[]}', 500))).toBe('error');
    expect(bad(json('{"allow":true,"reasons":[]}', 302))).toBe('error');
    expect(bad(json('{"allow":true,"reasons":[]}', 200, 'text/plain'))).toBe('error');
    expect(bad({ status: 200, contentType: null, body: '{"allow":true,"reasons":[]}', truncated: false })).toBe('error');
    expect(bad(json('{"allow":true,'))).toBe('error');
    expect(bad({ ...json('{"allow":true,"reasons":[]}'), truncated: true })).toBe('error');
    expect(readValidatorAnswer('http', json('{"allow":false,"allow":true,"reasons":[]}'))).toMatchObject({ status: 'error', error: expect.stringMatching(/duplicate key "allow"/) });
    expect(bad(json('{"allow":"true","reasons":[]}'))).toBe('error');
    expect(bad(json('{"allow":true}'))).toBe('error');
    expect(bad(json('{"allow":true,"reasons":[1]}'))).toBe('error');
    expect(bad(json('{"allow":true,"reasons":[],"risk":"extreme"}'))).toBe('error');
    expect(bad(json(`${'['.repeat(40)}${']'.repeat(40)}`))).toBe('error');
  });

  it('OPA: result.allow decides; no result is undefined, a deny', () => {
    expect(readValidatorAnswer('opa', json('{"result":{"allow":true}}'))).toEqual({ status: 'allow', reasons: [] });
    expect(readValidatorAnswer('opa', json('{"result":{"allow":false,"reasons":["r"]}}'))).toEqual({ status: 'deny', reasons: ['r'] });
    expect(readValidatorAnswer('opa', json('{}'))).toMatchObject({ status: 'deny', reasons: [expect.stringMatching(/undefined/)] });
    expect(readValidatorAnswer('opa', json('{"result":true}')).status).toBe('error');
    expect(readValidatorAnswer('opa', json('{"result":{"allow":true},"result":{"allow":false}}')).status).toBe('error');
  });

  it('reasons are bounded untrusted text: at most 10 kept, each cut, control and bidi characters blanked', () => {
    const many = JSON.stringify({ allow: false, reasons: Array.from({ length: 25 }, (_, i) => `r${i}`) });
    const out = readValidatorAnswer('http', json(many));
    expect(out.reasons).toHaveLength(11);
    expect(out.reasons[10]).toBe('(15 more reasons not kept)');
    expect(cleanReason('x'.repeat(5000)).length).toBe(MAX_PRECHECK_REASON_CHARS + 1);
    expect(cleanReason('a\nb\u202Ec\u0007')).toBe('a b c ');
  });

  it('strictJson agrees with JSON.parse on valid JSON', () => {
    for (const t of ['{"a":[1,2.5e3,-0.1,true,false,null,"x\\u00e9\\n"],"b":{}}', '[]', '"s"', ' 12 ']) expect(strictJson(t)).toEqual({ ok: true, value: JSON.parse(t) });
    expect(strictJson('{"a":1,}').ok).toBe(false);
    expect(strictJson('01').ok).toBe(false);
  });
});

describe('the body a validator receives', () => {
  it('is the documented, bounded shape: context ids only', () => {
    const body = precheckRequestBody('guardian', {
      stage: 'create',
      requestId: 'req_1',
      action: 'wire_money',
      args: { amount: 5 },
      alternative: null,
      agent: { id: 'agt_1', name: 'payer' },
      risk: { level: 'high', score: 0.7 },
      context: { incidentId: 'INC-1', relatedIncidents: ['INC-0', 7], evidence: [{ secret: 'x' }], target: { host: 'h' } },
    });
    expect(body).toEqual({
      version: 1,
      validator: 'guardian',
      stage: 'create',
      requestId: 'req_1',
      action: 'wire_money',
      args: { amount: 5 },
      alternative: null,
      agent: { id: 'agt_1', name: 'payer' },
      risk: { level: 'high', score: 0.7 },
      context: { incidentId: 'INC-1', relatedIncidents: ['INC-0'] },
    });
    expect(JSON.parse(precheckWireBody('opa', body)!)).toEqual({ input: body });
    expect(precheckWireBody('http', { ...body, args: { big: 'x'.repeat(300 * 1024) } })).toBeNull();
  });
});

describe('an aggregate approval and its members (F1)', () => {
  const cs = configs('  - { name: guardian, kind: http, url: "http://127.0.0.1:9/check", onError: allow }');
  const c = cs[0]!;
  const result = (r: Partial<PrecheckResult>): PrecheckResult => ({ name: 'guardian', identity: id(c), status: 'allow', reasons: [], ...r });
  it('approves a member the current validators allow, or raise no higher than the aggregate', () => {
    expect(aggregateMemberPrecheck(precheckOutcomes([result({})], cs, id), 'high')).toEqual({ approve: true });
    expect(aggregateMemberPrecheck(precheckOutcomes([result({ raiseTo: 'high' })], cs, id), 'high')).toEqual({ approve: true });
  });
  it('refuses a member denied, raised above the aggregate, or without a result (even under onError: allow), naming the validator', () => {
    expect(aggregateMemberPrecheck(precheckOutcomes([result({ status: 'deny', reasons: ['freeze'] })], cs, id), 'high')).toMatchObject({ approve: false, validator: 'guardian', why: 'denied by validator guardian: freeze' });
    expect(aggregateMemberPrecheck(precheckOutcomes([result({ raiseTo: 'critical' })], cs, id), 'high')).toMatchObject({ approve: false, validator: 'guardian' });
    expect(aggregateMemberPrecheck(precheckOutcomes([], cs, id), 'high')).toMatchObject({ approve: false, validator: 'guardian' });
    expect(aggregateMemberPrecheck(precheckOutcomes([result({ identity: 'an earlier config' })], cs, id), 'high')).toMatchObject({ approve: false });
  });
});
