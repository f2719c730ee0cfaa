/** The gateway's pure rules (plan.ts) and its config parsing. */
import type { Decision } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { parseGatewayConfig } from '../src/config.ts';
import {
  approvesToolChange,
  callIdentity,
  definitionHash,
  idempotencyKey,
  namespacedName,
  pinVerdict,
  requestBody,
  runPlan,
  toolChangeArgs,
} from '../src/plan.ts';

const decision = (over: Partial<Decision>): Decision => ({
  outcome: 'approved',
  decidedBy: 'reviewers',
  deciders: [{ type: 'operator', id: 'op_1', name: 'alice' }],
  reason: null,
  at: '2026-12-01T00:00:00.000Z',
  action: 'docs__delete_doc',
  args: { id: 'a' },
  alternative: null,
  modified: false,
  ...over,
});

describe('names', () => {
  it('namespaces server__tool and refuses names that cannot be Countersign actions', () => {
    expect(namespacedName('docs', 'read_doc')).toBe('docs__read_doc');
    expect(namespacedName('docs', 'read/doc')).toBeNull();
    expect(namespacedName('docs', 'read doc')).toBeNull();
    expect(namespacedName('docs', '')).toBeNull();
    expect(namespacedName('docs', 'x'.repeat(200))).toBeNull();
    expect(namespacedName('a__b', 'c')).toBeNull(); // server names may not contain __
  });
});

describe('pinned definitions', () => {
  const tool = { name: 'delete_doc', description: 'Deletes', inputSchema: { type: 'object', properties: { id: { type: 'string' } } }, annotations: { destructiveHint: true } };

  it('the hash ignores key order and moves with any change to name, description, schemas or annotations', () => {
    const base = definitionHash(tool);
    expect(definitionHash({ annotations: { destructiveHint: true }, inputSchema: { properties: { id: { type: 'string' } }, type: 'object' }, description: 'Deletes', name: 'delete_doc' })).toBe(base);
    expect(definitionHash({ ...tool, description: 'Deletes everything' })).not.toBe(base);
    expect(definitionHash({ ...tool, name: 'delete_docs' })).not.toBe(base);
    expect(definitionHash({ ...tool, inputSchema: { type: 'object' } })).not.toBe(base);
    expect(definitionHash({ ...tool, annotations: { destructiveHint: false } })).not.toBe(base);
    expect(definitionHash({ ...tool, outputSchema: { type: 'object' } })).not.toBe(base);
  });

  it('the hash covers the whole definition: execution, icons and _meta too (hosts render them; they can change how a call runs)', () => {
    const base = definitionHash(tool);
    expect(definitionHash({ ...tool, execution: { taskSupport: 'required' } })).not.toBe(base);
    expect(definitionHash({ ...tool, icons: [{ src: 'https://evil.example/trusted-bank.png' }] })).not.toBe(base);
    expect(definitionHash({ ...tool, _meta: { 'openai/outputTemplate': 'ui://widget/evil.html' } })).not.toBe(base);
    expect(definitionHash({ ...tool, title: 'Delete a draft' })).not.toBe(base);
  });

  it('trust on first use, held on change', () => {
    expect(pinVerdict(undefined, 'h1')).toEqual({ state: 'listed', hash: 'h1', newPin: true });
    expect(pinVerdict('h1', 'h1')).toEqual({ state: 'listed', hash: 'h1', newPin: false });
    expect(pinVerdict('h1', 'h2')).toEqual({ state: 'held', hash: 'h2', pinned: 'h1' });
  });

  it('a tool change counts only when reviewers approved exactly the change asked about', () => {
    const args = toolChangeArgs('docs__delete_doc', 'h1', 'h2', tool);
    const ok = decision({ action: 'mcp.tool_change', args });
    expect(approvesToolChange(ok, args)).toBe(true);
    expect(approvesToolChange({ ...ok, decidedBy: 'policy' }, args)).toBe(false);
    expect(approvesToolChange({ ...ok, args: { ...args, newHash: 'h3' } }, args)).toBe(false);
    expect(approvesToolChange({ ...ok, outcome: 'rejected' }, args)).toBe(false);
    expect(approvesToolChange({ ...ok, action: 'docs__delete_doc' }, args)).toBe(false);
  });
});

describe('idempotency keys', () => {
  it('same session, server, tool and canonical args make one identity; anything else another', () => {
    const id = callIdentity('s1', 'docs', 'delete_doc', { id: 'a', force: true });
    expect(callIdentity('s1', 'docs', 'delete_doc', { force: true, id: 'a' })).toBe(id);
    expect(callIdentity('s2', 'docs', 'delete_doc', { id: 'a', force: true })).not.toBe(id);
    expect(callIdentity('s1', 'other', 'delete_doc', { id: 'a', force: true })).not.toBe(id);
    expect(callIdentity('s1', 'docs', 'delete_doc', { id: 'b', force: true })).not.toBe(id);
  });

  it('each slot of one identity has its own key, valid for Countersign (≤ 200 chars)', () => {
    const id = callIdentity('s1', 'docs', 'delete_doc', {});
    const keys = [0, 1, 2].map((slot) => idempotencyKey(id, slot));
    expect(new Set(keys).size).toBe(3);
    for (const key of keys) expect(key.length).toBeLessThanOrEqual(200);
  });
});

describe('the request body', () => {
  const base = {
    action: 'docs__read_doc',
    server: 'docs',
    tool: 'read_doc',
    args: { id: 'a' },
    definitionHash: 'h',
    hints: undefined,
    idempotencyKey: 'k',
  };

  it('annotations of an untrusted server are context only: no confidence', () => {
    const body = requestBody({ ...base, annotations: { readOnlyHint: true }, trust: { trusted: false, readOnlyConfidence: 0.95 } });
    expect(body.confidence).toBeUndefined();
    expect(body.context).toMatchObject({ mcp: { annotations: { readOnlyHint: true }, annotationsTrusted: false } });
  });

  it('a trusted server\'s read-only, non-destructive tool gets its readOnlyConfidence; destructive never does', () => {
    const trust = { trusted: true, readOnlyConfidence: 0.9 };
    expect(requestBody({ ...base, annotations: { readOnlyHint: true }, trust }).confidence).toBe(0.9);
    expect(requestBody({ ...base, annotations: { readOnlyHint: true, destructiveHint: true }, trust }).confidence).toBeUndefined();
    expect(requestBody({ ...base, annotations: {}, trust }).confidence).toBeUndefined();
  });

  it('operator hints win over annotations', () => {
    const body = requestBody({ ...base, annotations: { readOnlyHint: true }, trust: { trusted: true, readOnlyConfidence: 0.95 }, hints: { confidence: 0.3, riskLevel: 'high' } });
    expect(body).toMatchObject({ confidence: 0.3, riskLevel: 'high' });
  });

  it('only the four boolean hints are copied from annotations (a server cannot inject other context)', () => {
    const body = requestBody({ ...base, annotations: { readOnlyHint: true, title: 'x', evil: { nested: 1 } } as never, trust: { trusted: false, readOnlyConfidence: 0.95 } });
    expect((body.context as { mcp: { annotations: unknown } }).mcp.annotations).toEqual({ readOnlyHint: true });
  });
});

describe('what an approval may run', () => {
  it('runs the approved (possibly modified) args of the tool that was asked for', () => {
    expect(runPlan('docs__delete_doc', decision({}))).toEqual({ run: true, args: { id: 'a' } });
    expect(runPlan('docs__delete_doc', decision({ args: { id: 'b' }, modified: true }))).toEqual({ run: true, args: { id: 'b' } });
  });

  it('refuses an approval that names another tool (an alternative): neither the original nor the other runs', () => {
    const plan = runPlan('docs__delete_doc', decision({ action: 'docs__archive_doc', alternative: 'archive' }));
    expect(plan.run).toBe(false);
    expect(runPlan('docs__delete_doc', decision({ outcome: 'rejected', action: null, args: null })).run).toBe(false);
    expect(runPlan('docs__delete_doc', decision({ args: null })).run).toBe(false);
  });
});

describe('gateway config', () => {
  const env = { COUNTERSIGN_AGENT_KEY: 'csk_test', REMOTE_TOKEN: 'secret' };

  it('parses servers, defaults and env-expanded headers', () => {
    const config = parseGatewayConfig(
      `
countersign: { url: http://127.0.0.1:8080 }
servers:
  docs: { command: node, args: [docs.js], trusted: true, tools: { delete_doc: { riskLevel: high } } }
  remote: { url: "https://mcp.example.com/mcp", headers: { authorization: "Bearer \${REMOTE_TOKEN}" } }
`,
      env,
      '/etc/countersign',
    );
    expect(config.waitSeconds).toBe(50);
    expect(config.listen.host).toBe('127.0.0.1');
    expect(config.servers.docs).toMatchObject({ command: 'node', trusted: true, tools: { delete_doc: { riskLevel: 'high' } } });
    expect(config.servers.remote).toMatchObject({ headers: { authorization: 'Bearer secret' }, trusted: false });
    expect(Object.isFrozen(config)).toBe(true);
    // Pins are kept on disk by default, beside the config, so a restart does not trust a changed tool anew.
    expect(config.pinsPath).toBe('/etc/countersign/gateway.pins.json');
    expect(config.auditPublicKey).toBeUndefined();
  });

  it('pins: a path of its own, or false for memory only; the audit key from the file or (first) the environment', () => {
    const servers = 'servers: { docs: { command: node } }\n';
    expect(parseGatewayConfig(`gateway: { pins: state/pins.json }\n${servers}`, env, '/srv', 'gw.yml').pinsPath).toBe('/srv/state/pins.json');
    expect(parseGatewayConfig(servers, env, '/srv', 'prod-gateway.yaml').pinsPath).toBe('/srv/prod-gateway.pins.json');
    expect(parseGatewayConfig(`gateway: { pins: false }\n${servers}`, env, '/srv').pinsPath).toBeNull();
    expect(() => parseGatewayConfig(`gateway: { pins: true }\n${servers}`, env, '/srv')).toThrow(/gateway\.pins/);
    expect(parseGatewayConfig(`countersign: { auditPublicKey: kid_abc }\n${servers}`, env, '/srv').auditPublicKey).toBe('kid_abc');
    expect(parseGatewayConfig(`countersign: { auditPublicKey: kid_abc }\n${servers}`, { ...env, COUNTERSIGN_AUDIT_PUBLIC_KEY: 'kid_env' }, '/srv').auditPublicKey).toBe('kid_env');
  });

  it('names the wrong key, refuses unknown keys, and needs the agent key from the environment', () => {
    expect(() => parseGatewayConfig('servers: { docs: { command: node, trusted: yes-please } }', env, '/')).toThrow(/servers\.docs/);
    expect(() => parseGatewayConfig('servers: { docs: { command: node, secret: x } }', env, '/')).toThrow(/VALIDATION|Unrecognized|unrecognized/);
    expect(() => parseGatewayConfig('servers: { "a__b": { command: node } }', env, '/')).toThrow(/servers/);
    expect(() => parseGatewayConfig('servers: {}', env, '/')).toThrow(/at least one/);
    expect(() => parseGatewayConfig('servers: { docs: { command: node } }', {}, '/')).toThrow(/COUNTERSIGN_AGENT_KEY/);
    expect(() => parseGatewayConfig('servers: { r: { url: "https://x.example", headers: { a: "${MISSING}" } } }', env, '/')).toThrow(/MISSING/);
  });
});
