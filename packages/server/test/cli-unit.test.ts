/**
 * The CLI's pure parts and its command tree, in-process: safe printing, tables, durations,
 * --help of every command, and client-side errors that need no server.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command, CommanderError } from 'commander';
import { CountersignError, type ApprovalRequest } from '@countersign/core';
import { describe, expect, it } from 'vitest';
import { registerClientCommands } from '../src/cli/commands/index.ts';
import { age, relative, safe, safeJson, safeMultiline, shortDuration, table, timeLeft } from '../src/cli/format.ts';
import { ApiClient, idSegment } from '../src/cli/http-client.ts';
import { approvalSeenHash, renderRequest, stillNeeds } from '../src/cli/commands/requests.ts';
import { renderAgentConfig } from '../src/cli/commands/agents.ts';
import { payloadHashOf } from '../src/engine/decisions.ts';
import { payloadKey } from '@countersign/core';

const DANGEROUS = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/;

describe('safe printing', () => {
  it('escapes C0/C1 controls, bidi and invisible characters', () => {
    expect(safe('a\u202eb')).toBe('a\\u202eb');
    expect(safe('\u001b[31mred\u001b[0m')).toBe('\\u001b[31mred\\u001b[0m');
    expect(safe('x\u009by')).toBe('x\\u009by');
    expect(safe('l1\nl2\rl3\tz')).toBe('l1\\u000al2\\u000dl3\\u0009z');
    expect(safe('\u200b\u200f\u2066\u2069\ufeff')).toBe('\\u200b\\u200f\\u2066\\u2069\\ufeff');
    expect(safe('plain ascii, ünïcödé, 日本, emoji 🎉')).toBe('plain ascii, ünïcödé, 日本, emoji 🎉');
    expect(safe('lone \ud800 surrogate')).toBe('lone \\ud800 surrogate');
    expect(safe(null)).toBe('');
  });

  it('keeps newlines in multi-line text only', () => {
    expect(safeMultiline('l1\nl2\u202e\r')).toBe('l1\nl2\\u202e\\u000d');
  });

  it('safe JSON parses back to the same value', () => {
    const value = { d: 'a\u202eb\u001b[2J\u0085', k: ['\u2066x'], n: 1 };
    const text = safeJson(value);
    expect(text).not.toMatch(DANGEROUS);
    expect(JSON.parse(text)).toEqual(value);
  });
});

describe('tables and durations', () => {
  it('aligns columns, escapes and truncates cells', () => {
    const out = table(
      [
        { a: 'x', b: 'first' },
        { a: 'longer\u202e', b: 'y'.repeat(20) },
      ],
      [
        { header: 'A', value: (r) => r.a },
        { header: 'B', value: (r) => r.b, max: 10 },
      ],
    );
    expect(out.split('\n')).toEqual(['A             B', 'x             first', 'longer\\u202e  yyyyyyyyy…']);
  });

  it('formats durations compactly', () => {
    expect(shortDuration(0)).toBe('0s');
    expect(shortDuration(45_000)).toBe('45s');
    expect(shortDuration(252_000)).toBe('4m12s');
    expect(shortDuration(180_000)).toBe('3m');
    expect(shortDuration(7_380_000)).toBe('2h3m');
    expect(shortDuration(7_200_000)).toBe('2h');
    expect(shortDuration(3 * 86_400_000 + 4 * 3_600_000)).toBe('3d4h');
    const now = Date.parse('2025-01-01T12:00:00Z');
    expect(timeLeft('2025-01-01T12:11:30Z', now)).toBe('11m30s');
    expect(timeLeft('2025-01-01T11:57:00Z', now)).toBe('overdue 3m');
    expect(timeLeft(null, now)).toBe('-');
    expect(relative('2025-01-01T11:55:48Z', now)).toBe('4m12s ago');
    expect(relative('2025-01-01T12:03:00Z', now)).toBe('in 3m');
    expect(age('garbage', now)).toBe('-');
  });
});

function program(): { program: Command; output: () => string } {
  let out = '';
  const p = new Command().name('countersign').exitOverride();
  p.configureOutput({ writeOut: (s) => (out += s), writeErr: (s) => (out += s) });
  registerClientCommands(p);
  return { program: p, output: () => out };
}

async function parse(args: string[]): Promise<{ error: unknown; output: string }> {
  const { program: p, output } = program();
  try {
    await p.parseAsync(['node', 'countersign', ...args]);
    return { error: undefined, output: output() };
  } catch (error) {
    return { error, output: output() };
  }
}

describe('command tree', () => {
  const leaves = [
    ['status'],
    ['show'],
    ['approve'],
    ['reject'],
    ['history'],
    ['config'],
    ['operators', 'add'],
    ['operators', 'list'],
    ['keys', 'create'],
    ['audit', 'tail'],
    ['approvers', 'allowlist'],
    ['roles', 'allowlist'],
  ];

  it.each(leaves.map((l) => [l.join(' '), l] as const))('%s --help', async (_name, path) => {
    const { error, output } = await parse([...path, '--help']);
    expect(error).toBeInstanceOf(CommanderError);
    expect((error as CommanderError).exitCode).toBe(0);
    expect(output).toContain(`Usage: countersign ${path.join(' ')}`);
    for (const flag of ['--json', '--url', '--token']) expect(output).toContain(flag);
  });

  it('usage errors are commander errors (exit code from commander)', async () => {
    const noReason = await parse(['reject', 'req_x']);
    expect(noReason.error).toBeInstanceOf(CommanderError);
    expect((noReason.error as CommanderError).exitCode).toBe(1);
    const badRole = await parse(['operators', 'add', '--name', 'x', '--role', 'pope']);
    expect((badRole.error as CommanderError).code).toBe('commander.invalidArgument');
    const badLimit = await parse(['status', '--limit', '0']);
    expect((badLimit.error as CommanderError).code).toBe('commander.invalidArgument');
  });

  it('rejects --args that are not a JSON object before any HTTP call', async () => {
    const url = 'http://127.0.0.1:9'; // nothing listens: reaching the network would be NETWORK_ERROR
    for (const args of ['{oops', '[1]', '"text"', 'null']) {
      const { error } = await parse(['approve', 'req_x', '--args', args, '--url', url, '--token', 'cso_xxxxxxxxxxxx']);
      expect(error).toBeInstanceOf(CountersignError);
      expect((error as CountersignError).code).toBe('VALIDATION_FAILED');
    }
    const both = await parse(['approve', 'req_x', '--args', '{}', '--alternative', 'a', '--url', url, '--token', 'cso_xxxxxxxxxxxx']);
    expect((both.error as CountersignError).code).toBe('VALIDATION_FAILED');
  });
});

describe('http client', () => {
  it('refuses ids that would change the path', () => {
    expect(idSegment('req_01abc')).toBe('req_01abc');
    for (const bad of ['..', '.', 'a/b', 'req_1?x=1', '', 'a\u202e']) {
      expect(() => idSegment(bad)).toThrow(CountersignError);
    }
  });

  it('needs a token, names the URL when the server is unreachable, and checks the URL', async () => {
    await expect(new ApiClient({ url: 'http://127.0.0.1:9' }, {}).get('/v1/requests')).rejects.toMatchObject({
      code: 'UNAUTHENTICATED',
      message: expect.stringContaining('set COUNTERSIGN_TOKEN or pass --token'),
    });
    await expect(new ApiClient({ url: 'http://127.0.0.1:9', token: 'cso_x' }, {}).get('/v1/requests')).rejects.toMatchObject({
      code: 'NETWORK_ERROR',
      message: expect.stringContaining('http://127.0.0.1:9'),
    });
    expect(() => new ApiClient({ url: 'ftp://example.com' }, {})).toThrow(/http:\/\/ or https:\/\//);
    expect(() => new ApiClient({ url: 'not a url' }, {})).toThrow(CountersignError);
    const fromEnv = new ApiClient({}, { COUNTERSIGN_URL: 'http://h:1/', COUNTERSIGN_TOKEN: 'cso_secret' });
    expect(fromEnv.baseUrl).toBe('http://h:1');
    expect(fromEnv.tokenHint).toBe('cso_se…');
    const flags = new ApiClient({ url: 'http://f:2', token: 'cso_flag' }, { COUNTERSIGN_URL: 'http://h:1', COUNTERSIGN_TOKEN: 'cso_env' });
    expect([flags.baseUrl, flags.token, flags.sources.url, flags.sources.token]).toEqual(['http://f:2', 'cso_flag', 'flag', 'flag']);
    expect(new ApiClient({}, {}).baseUrl).toBe('http://127.0.0.1:8080');
  });

  it('over node:http: sends the JSON body and token, reads UTF-8 split across chunks, refuses redirects, times out, maps error bodies', async () => {
    const seen: { method?: string; url?: string; auth?: string; type?: string; length?: string; body: string }[] = [];
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, auth: req.headers.authorization, type: req.headers['content-type'], length: req.headers['content-length'], body });
        if (req.url === '/redirect') return res.writeHead(302, { location: 'http://elsewhere.invalid/steal' }).end();
        if (req.url === '/slow') return; // never answers
        if (req.url === '/refused') return res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'FORBIDDEN', message: 'not yours', details: { need: 'admin' } } }));
        if (req.url === '/html') return res.writeHead(502, 'Bad Gateway').end('<html>');
        // "é€" is 2 + 3 bytes: written a byte at a time, every character is split across chunks.
        const bytes = Buffer.from(JSON.stringify({ text: 'é€ ok', echo: body }), 'utf8');
        res.writeHead(200, { 'content-type': 'application/json' });
        for (const byte of bytes) res.write(Buffer.from([byte]));
        res.end();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const client = new ApiClient({ url, token: 'cso_test' }, {}, 500);
      expect(await client.post('/echo', { amount: '€5' })).toEqual({ text: 'é€ ok', echo: '{"amount":"€5"}' });
      expect(seen.at(-1)).toMatchObject({ method: 'POST', url: '/echo', auth: 'Bearer cso_test', type: 'application/json', length: String(Buffer.byteLength('{"amount":"€5"}')) });
      expect(await client.get('/echo', { q: 'a b' })).toMatchObject({ text: 'é€ ok' });
      expect(seen.at(-1)).toMatchObject({ method: 'GET', url: '/echo?q=a+b', body: '' });
      await expect(client.get('/redirect')).rejects.toMatchObject({ code: 'NETWORK_ERROR', message: expect.stringContaining('unexpected redirect') });
      await expect(client.get('/refused')).rejects.toMatchObject({ code: 'FORBIDDEN', message: 'not yours', details: { need: 'admin' } });
      await expect(client.get('/html')).rejects.toMatchObject({ code: 'NETWORK_ERROR', message: `${url} answered HTTP 502 Bad Gateway` });
      const started = performance.now();
      await expect(client.get('/slow')).rejects.toMatchObject({ code: 'NETWORK_ERROR', message: `no answer from ${url} within 1s` });
      expect(performance.now() - started).toBeLessThan(5_000);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

function request(overrides: Partial<ApprovalRequest> = {}): ApprovalRequest {
  return {
    id: 'req_01aaaaaaaaaaaaaaaaaaaaaaaa',
    agentId: 'agt_1',
    agentName: 'demo-agent',
    status: 'pending',
    action: 'wire_transfer',
    args: { amount: 60_000 },
    description: 'pay \u202eevil\u001b[31m\nline two',
    confidence: 0.7,
    riskHint: null,
    context: { evidence: ['e1\u2067'], target: 'acct' },
    alternatives: [],
    approvers: [],
    idempotencyKey: null,
    assessment: {
      riskScore: 0.9,
      riskLevel: 'critical',
      factors: [{ name: 'severity', value: 0.9, weight: 0.45, contribution: 0.41, detail: 'weight \u202e' }],
      automationLevel: 'manual',
      route: 'review',
      requiresApproval: true,
      matchedRules: [{ name: 'very-large-transfer', reason: 'value ≥ 50000', effects: ['approvers'] }],
      approval: {
        stages: [
          { count: 2, role: 'manager', label: '2 managers' },
          { count: 1, role: 'director', label: 'director' },
        ],
        deny: 1,
      },
      slaSeconds: 300,
      slaDueAt: '2025-01-01T12:05:00.000Z',
      mfaRequired: true,
      reasons: ['Risk critical.'],
    },
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: '2025-01-01T12:00:00.000Z',
    updatedAt: '2025-01-01T12:00:00.000Z',
    expiresAt: null,
    ...overrides,
  };
}

describe('request rendering', () => {
  it('labels and escapes agent-supplied content', () => {
    const out = renderRequest(request(), Date.parse('2025-01-01T12:01:00Z'));
    expect(out).not.toMatch(DANGEROUS);
    expect(out).toContain('description (AGENT-SUPPLIED, untrusted):');
    expect(out).toContain('│ pay \\u202eevil\\u001b[31m\n    │ line two');
    expect(out).toContain('e1\\u2067');
    expect(out).toContain('weight \\u202e');
    expect(out).toContain('very-large-transfer: value ≥ 50000 [approvers]');
    expect(out).toContain('2 managers, then director');
    expect(out).toMatch(/sla due:\s+2025-01-01T12:05:00.000Z \(4m\)/);
  });

  it('says what a pending request still needs', () => {
    const vote = (name: string, extra: Partial<ApprovalRequest['reviews'][number]> = {}) => ({
      id: `rev_${name}`,
      requestId: 'req_01aaaaaaaaaaaaaaaaaaaaaaaa',
      reviewer: { type: 'operator' as const, id: `op_${name}`, name },
      verdict: 'approve' as const,
      reason: null,
      args: null,
      alternative: null,
      at: '2025-01-01T12:00:30.000Z',
      ...extra,
    });
    expect(stillNeeds(request(), 'approve')).toBe('2 more approvals (role manager or higher), then 1 (role director or higher)');
    expect(stillNeeds(request({ reviews: [vote('a')] }), 'approve')).toBe('1 more approval (role manager or higher), then 1 (role director or higher)');
    expect(stillNeeds(request({ reviews: [vote('a'), vote('b')] }), 'approve')).toBe('1 more approval (role director or higher)');
    // Modified args start over: earlier approvals were for a different payload.
    expect(stillNeeds(request({ reviews: [vote('a'), vote('b', { args: { amount: 1 } })] }), 'approve')).toBe(
      '1 more approval (role manager or higher), then 1 (role director or higher)',
    );
  });
});

describe('approve without --payload-hash (review finding 2)', () => {
  const original = { action: 'rotate_keys', args: { scope: 'staging' } };
  const view = (action: string, args: Record<string, unknown>, alternative: string | null) =>
    ({ id: 'req_x', ...original, payload: { action, args, alternative, payloadHash: payloadHashOf(payloadKey(action, args)), mfaRequired: false, matchCodeRequired: false } }) as unknown as ApprovalRequest;

  it('sends the hash only when what would run is the request as asked (the same hash the server computes)', () => {
    expect(approvalSeenHash(view('rotate_keys', { scope: 'staging' }, null))).toBe(payloadHashOf(payloadKey('rotate_keys', { scope: 'staging' })));
    expect(approvalSeenHash({ id: 'req_x', ...original, payload: undefined } as unknown as ApprovalRequest)).toBeUndefined();
  });

  it("refuses a reviewer's modification, naming it and how to approve it; never sends the fetched hash", () => {
    const hash = payloadHashOf(payloadKey('rotate_keys', { scope: 'production' }));
    let thrown: unknown;
    try {
      approvalSeenHash(view('rotate_keys', { scope: 'production' }, null));
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(CountersignError);
    expect((thrown as CountersignError).code).toBe('PAYLOAD_CHANGED');
    expect((thrown as CountersignError).message).toContain('modified arguments: rotate_keys {"scope":"production"}');
    expect((thrown as CountersignError).message).toContain(`countersign show req_x`);
    expect((thrown as CountersignError).message).toContain(`--payload-hash ${hash}`);
  });

  it('refuses an alternative under review, and a payload claiming to be the original with another hash', () => {
    expect(() => approvalSeenHash(view('pay_vendor', { v: 1 }, 'vendor'))).toThrow(/alternative vendor: pay_vendor/);
    const lying = view('rotate_keys', { scope: 'staging' }, null);
    (lying.payload as { payloadHash: string }).payloadHash = 'f'.repeat(64);
    expect(() => approvalSeenHash(lying)).toThrow(CountersignError);
  });

  it('escapes agent text in the refusal', () => {
    expect(() => approvalSeenHash(view('rotate_keys', { scope: 'x\u202ey' }, null))).toThrow(/x\\u202ey/);
  });
});

describe('agents config get', () => {
  it('says which overlay values do not apply, and what each approved loosening was approved against', () => {
    const out = renderAgentConfig({
      agent: { id: 'agt_1', name: 'billing-bot' },
      version: 3,
      integrity: 'ok',
      overlay: { limits: { perMinute: 600 }, enabled: true },
      baselines: { 'limits.perMinute': 60 },
      effective: [
        { key: 'enabled', value: false, source: 'agent', from: 'agents.billing-bot.enabled', overlay: { value: true, applies: false } },
        { key: 'limits.perMinute', value: 600, source: 'overlay', from: null, overlay: { value: 600, applies: true } },
      ],
      singleAdmin: false,
    });
    expect(out.split('\n')).toEqual([
      'agent billing-bot (agt_1): overlay version 3',
      "  enabled           false             agent (agents.billing-bot.enabled); the overlay's true does not apply (the file is as strict or stricter)",
      '  limits.perMinute  600               overlay',
      'approved loosenings (each applies while the policy file keeps the value it was approved against):',
      "  limits.perMinute: approved against the file's 60",
    ]);
  });
});
