/**
 * The ticketing channels' settings and their edges, against the local stand-ins: the policy
 * check names every bad key (secrets inline, unset variables, a Jira `decide.field`); OAuth bearer
 * tokens for both; a ServiceNow retry after a lost answer finds the record it opened instead of
 * opening a second; a Jira decision with no transition left is still written, as a comment.
 */
import { CreateRequestBody, defaultPolicy, evaluate, EMPTY_HISTORY, renderNotification, type ApprovalRequest } from '@countersign/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveChannels, type ChannelConfig } from '../src/channels/config.ts';
import { createChannel } from '../src/channels/registry.ts';
import { jiraCloud, serviceNowTable, type JiraStandIn, type ServiceNowStandIn } from './support/itsm-standins.ts';

const NOW = Date.now();

function request(over: Partial<ApprovalRequest> = {}): ApprovalRequest {
  const body = CreateRequestBody.parse({ action: 'rotate_keys', args: { scope: 'prod' }, confidence: 0.8 });
  return {
    id: 'req_01jabcdefghjkmnpqrstvwxyz1',
    agentId: 'agt_1',
    agentName: 'ops-bot',
    status: 'pending',
    action: body.action,
    args: body.args,
    description: null,
    confidence: 0.8,
    riskHint: null,
    context: {},
    alternatives: [],
    approvers: [],
    idempotencyKey: null,
    assessment: evaluate({ ...body, agent: 'ops-bot' }, defaultPolicy(), EMPTY_HISTORY, new Date(NOW)),
    policyVersion: 1,
    reviews: [],
    decision: null,
    execution: null,
    createdAt: new Date(NOW).toISOString(),
    updatedAt: new Date(NOW).toISOString(),
    expiresAt: null,
    escalation: null,
    ...over,
  } as ApprovalRequest;
}
const requested = renderNotification(request(), 'requested', { reviewBase: 'https://cs.example.com', now: NOW });
const decided = renderNotification(
  request({ status: 'approved', decision: { outcome: 'approved', decidedBy: 'reviewers', deciders: [{ type: 'operator', id: 'op_1', name: 'alice' }], reason: 'ok', at: new Date(NOW).toISOString(), action: 'rotate_keys', args: {}, alternative: null, modified: false } }),
  'decided',
  { reviewBase: 'https://cs.example.com', now: NOW },
);
const one = (channels: Record<string, unknown>, env: Record<string, string>) => resolveChannels(channels, env);
const send = (config: ChannelConfig, n = requested, previous: unknown[] = [], attempt = 1) =>
  createChannel(config).send({ id: `dlv_${Math.random()}`, attempt, notification: n, previous }, AbortSignal.timeout(5_000));

describe('ticketing channel settings', () => {
  it('names every bad key: secrets inline, unset variables, a Jira decide.field, a bad table', () => {
    const { errors } = one(
      {
        snow: { type: 'servicenow', instanceUrl: 'https://acme.service-now.com', password: 'hunter2', table: 'problem' },
        jira: { type: 'jira', url: 'https://acme.atlassian.net', project: 'SEC', decide: { field: 'status', approve: ['Done'] } },
        jira2: { type: 'jira', url: 'https://acme.atlassian.net', project: 'sec' },
      },
      { COUNTERSIGN_JIRA_EMAIL: 'a@example.com', COUNTERSIGN_JIRA_API_TOKEN: 't' },
    );
    const paths = errors.map((e) => e.path);
    expect(paths).toContain('channels.snow.password');
    expect(paths).toContain('channels.snow.table');
    expect(paths).toContain('channels.jira.decide.field');
    expect(paths).toContain('channels.jira2.project');
    const { errors: unset } = one({ snow: { type: 'servicenow', instanceUrl: 'https://acme.service-now.com' } }, {});
    expect(unset.map((e) => `${e.path}: ${e.message}`)).toEqual([
      'channels.snow.userEnv: environment variable COUNTERSIGN_SERVICENOW_USER is not set',
      'channels.snow.passwordEnv: environment variable COUNTERSIGN_SERVICENOW_PASSWORD is not set',
    ]);
  });

  it('without decide: a ticketing channel mirrors only (decide is null)', () => {
    const { configs, errors } = one({ snow: { type: 'servicenow', instanceUrl: 'https://acme.service-now.com' } }, { COUNTERSIGN_SERVICENOW_USER: 'u', COUNTERSIGN_SERVICENOW_PASSWORD: 'p' });
    expect(errors).toEqual([]);
    expect((configs.get('snow') as Extract<ChannelConfig, { type: 'servicenow' }>).settings.decide).toBeNull();
  });
});

describe('ServiceNow over the Table API', () => {
  let sn: ServiceNowStandIn;
  beforeAll(async () => {
    sn = await serviceNowTable({ bearer: 'oauth-access-token' });
  });
  afterAll(() => sn.close());

  it('authenticates with an OAuth bearer token (tokenEnv)', async () => {
    const { configs, errors } = one({ snow: { type: 'servicenow', instanceUrl: sn.url, tokenEnv: 'SN_TOKEN' } }, { SN_TOKEN: 'oauth-access-token' });
    expect(errors).toEqual([]);
    const ref = (await send(configs.get('snow')!)) as { ticket: { id: string; key: string } };
    expect(ref.ticket.key).toMatch(/^INC\d{7}$/);
    expect(requested.risk.level).toBe('medium');
    expect(sn.records.get(ref.ticket.id)).toMatchObject({ correlation_id: 'req_01jabcdefghjkmnpqrstvwxyz1', urgency: '2', impact: '2', sys_created_by: 'oauth.integration' });
  });

  it('a retry after a lost answer finds the record it opened: one ticket, not two', async () => {
    const { configs } = one({ snow: { type: 'servicenow', instanceUrl: sn.url, tokenEnv: 'SN_TOKEN' } }, { SN_TOKEN: 'oauth-access-token' });
    const id = 'req_01jabcdefghjkmnpqrstvwxyz2';
    const n = renderNotification(request({ id }), 'requested', { reviewBase: 'https://cs.example.com', now: NOW });
    const first = (await send(configs.get('snow')!, n)) as { ticket: { id: string } };
    const posts = sn.calls.filter((c) => c.method === 'POST').length;
    // The first answer never reached the notifier; attempt 2 of the same delivery:
    const second = (await send(configs.get('snow')!, n, [], 2)) as { ticket: { id: string } };
    expect(second.ticket.id).toBe(first.ticket.id);
    expect(sn.calls.filter((c) => c.method === 'POST').length).toBe(posts);
    expect(decodeURIComponent(sn.calls.at(-1)!.query)).toContain(`correlation_id=${id}`);
    expect([...sn.records.values()].filter((r) => r['correlation_id'] === id)).toHaveLength(1);
  });

  it('a wrong token is a permanent failure', async () => {
    const { configs } = one({ snow: { type: 'servicenow', instanceUrl: sn.url, tokenEnv: 'SN_TOKEN' } }, { SN_TOKEN: 'expired' });
    await expect(send(configs.get('snow')!)).rejects.toMatchObject({ retryable: false, message: expect.stringContaining('HTTP 401') });
  });
});

describe('Jira Cloud through jira.js', () => {
  let jira: JiraStandIn;
  beforeAll(async () => {
    jira = await jiraCloud({ bearer: 'jira-oauth-token' });
  });
  afterAll(() => jira.close());

  it('authenticates with an OAuth 2.0 bearer (tokenEnv); a decision with no transition left is a comment', async () => {
    const { configs, errors } = one({ jira: { type: 'jira', url: jira.url, project: 'SEC', tokenEnv: 'JIRA_TOKEN' } }, { JIRA_TOKEN: 'jira-oauth-token' });
    expect(errors).toEqual([]);
    const ref = (await send(configs.get('jira')!)) as { ticket: { key: string } };
    const issue = jira.issues.get(ref.ticket.key)!;
    issue.status = 'Done'; // someone moved it already
    const out = await send(configs.get('jira')!, decided, [ref]);
    expect(out).toMatchObject({ commented: ref.ticket.key });
    expect(issue.status).toBe('Done');
    expect(JSON.stringify(issue.comments)).toContain('approved by alice');
  });

  it('a wrong token is a permanent failure; a 503 is retryable', async () => {
    const { configs } = one({ jira: { type: 'jira', url: jira.url, project: 'SEC', tokenEnv: 'JIRA_TOKEN' } }, { JIRA_TOKEN: 'nope' });
    await expect(send(configs.get('jira')!)).rejects.toMatchObject({ retryable: false });
    const good = one({ jira: { type: 'jira', url: jira.url, project: 'SEC', tokenEnv: 'JIRA_TOKEN' } }, { JIRA_TOKEN: 'jira-oauth-token' }).configs.get('jira')!;
    jira.failNext(503);
    await expect(send(good)).rejects.toMatchObject({ retryable: true });
  });
});
