/**
 * Channel settings from the policy's `channels:` section, validated here (core keeps that
 * section free-form: its shape belongs to the adapters). Secrets never sit in the policy, which
 * is stored, versioned and served by `GET /v1/policy`: each secret is named by the environment
 * variable that holds it (`secretEnv`, `tokenEnv`, …), with a default name per type.
 *
 *   channels:
 *     soc-hook:  { type: webhook, url: https://hooks.example.com/countersign }   # COUNTERSIGN_WEBHOOK_SECRET
 *     slack:     { channel: C0123456789, users: { U024BE7LH: alice } }           # type from the name
 *     email:     { from: countersign@example.com, to: [soc-leads@example.com] }  # COUNTERSIGN_SMTP_URL
 *     teams:     {}                                                               # COUNTERSIGN_TEAMS_WEBHOOK_URL
 *     pagerduty: {}                                                               # COUNTERSIGN_PAGERDUTY_ROUTING_KEY
 *
 * Every channel also takes `retry: { attempts, backoff }` and `timeout`.
 */
import { DEFAULT_RETRY, parseDuration, type Policy, type PolicyError, type RetryPolicy } from '@countersign/core';
import { z } from 'zod';
import { CHANNEL_TYPES, GUARD_CHANNEL_TYPES, type ChannelType } from './types.ts';

const EnvName = z.string().regex(/^[A-Z_][A-Z0-9_]{0,127}$/, 'an environment variable name, like COUNTERSIGN_SLACK_BOT_TOKEN');
const Duration = z.string().refine((s) => parseDuration(s) !== undefined, 'a duration like 500ms, 2s or 1m');
const HttpUrl = z.url({ protocol: /^https?$/, error: 'an http(s) URL' });
const Email = z.email({ error: 'an email address' });

const Common = {
  type: z.enum(CHANNEL_TYPES).optional(),
  retry: z.strictObject({ attempts: z.int().min(1).max(20).optional(), backoff: Duration.optional() }).optional(),
  timeout: Duration.optional(),
};

/**
 * `decide:` — the ticket's state may decide the request (default: absent, tickets mirror and
 * never decide). `approve` / `reject`: the states (ServiceNow: values of `field`, default
 * `approval` for change requests and `state` for incidents; Jira: status names) that vote.
 */
const TicketDecide = z.strictObject({
  field: z.string().regex(/^[a-z_][a-z0-9_]{0,39}$/, 'a ServiceNow field name').optional(),
  approve: z.array(z.string().min(1).max(60)).min(1).max(10),
  reject: z.array(z.string().min(1).max(60)).max(10).optional(),
});

const SECRET_KEYS = /^(secret|token|password|pass|key|routingKey|routing_key|signingSecret|webhookUrl|smtpUrl|auth)$/i;

const Schemas = {
  /** `checkpoints: true`: this webhook is also a witness, sent every signed audit checkpoint (`countersign.audit.checkpoint`). */
  webhook: z.strictObject({ ...Common, url: HttpUrl, secretEnv: EnvName.optional(), checkpoints: z.boolean().optional() }),
  email: z.strictObject({
    ...Common,
    from: Email,
    to: z.array(Email).min(1).max(50),
    smtpUrlEnv: EnvName.optional(),
    subjectPrefix: z.string().max(50).optional(),
  }),
  slack: z.strictObject({
    ...Common,
    channel: z.string().regex(/^[#@]?[A-Za-z0-9._-]{1,80}$/, 'a Slack channel id like C0123456789 (or #name)'),
    tokenEnv: EnvName.optional(),
    signingSecretEnv: EnvName.optional(),
    apiUrl: HttpUrl.optional(),
    /** Slack user id → Countersign operator name, for button clicks. */
    users: z.record(z.string().regex(/^[UW][A-Z0-9]{2,30}$/, 'a Slack user id like U024BE7LH'), z.string().min(1).max(100)).optional(),
  }),
  teams: z.strictObject({
    ...Common,
    urlEnv: EnvName.optional(),
    /** The bot's Microsoft App ID: set, cards carry Action.Execute buttons and invokes are accepted for it (the token's audience). */
    appId: z.string().regex(/^[0-9A-Fa-f-]{8,64}$/, 'a Microsoft App ID (a GUID)').optional(),
    /** Where the Bot Framework's OpenID metadata is (its jwks_uri names the signing keys); Microsoft's by default. */
    openIdMetadataUrl: HttpUrl.optional(),
    /**
     * Post through the Bot Connector into this conversation (as the bot: the cards' Action.Execute
     * invokes then come back to it), instead of the incoming webhook; needs appId and the bot's
     * password (appPasswordEnv, default COUNTERSIGN_TEAMS_APP_PASSWORD).
     */
    conversation: z.strictObject({ serviceUrl: HttpUrl, id: z.string().regex(/^[A-Za-z0-9:@._;=-]{1,300}$/, 'a Teams conversation id like 19:…@thread.tacv2') }).optional(),
    appPasswordEnv: EnvName.optional(),
    /** Where the bot gets its token (client credentials); Microsoft's multi-tenant endpoint by default. */
    tokenUrl: HttpUrl.optional(),
    /** Teams user (aadObjectId, or from.id) → Countersign operator name, for card actions. */
    users: z.record(z.string().regex(/^[A-Za-z0-9:._-]{1,200}$/, 'a Teams user id: the aadObjectId GUID or the 29:… id'), z.string().min(1).max(100)).optional(),
    /** Microsoft Entra tenant ids whose invokes are accepted (the activity's channelData.tenant.id); unset: any tenant (recommended: set it). */
    tenants: z.array(z.string().regex(/^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/, 'a tenant id (a GUID)')).min(1).max(50).optional(),
  }),
  pagerduty: z.strictObject({ ...Common, routingKeyEnv: EnvName.optional(), url: HttpUrl.optional() }),
  servicenow: z.strictObject({
    ...Common,
    instanceUrl: HttpUrl,
    table: z.enum(['incident', 'change_request']).optional(),
    /** Basic auth (default: COUNTERSIGN_SERVICENOW_USER / COUNTERSIGN_SERVICENOW_PASSWORD), or an OAuth bearer token when tokenEnv is given. */
    userEnv: EnvName.optional(),
    passwordEnv: EnvName.optional(),
    tokenEnv: EnvName.optional(),
    /** HMAC key of the signed state-change callback (unset: the callback is refused). */
    callbackSecretEnv: EnvName.optional(),
    /** Poll the table for changes (`sys_updated_on`) this often, besides the callback. */
    poll: Duration.optional(),
    assignmentGroup: z.string().min(1).max(100).optional(),
    /** ServiceNow user_name → Countersign operator (who changed the ticket: `sys_updated_by`). */
    users: z.record(z.string().regex(/^[A-Za-z0-9@._-]{1,100}$/, 'a ServiceNow user_name'), z.string().min(1).max(100)).optional(),
    decide: TicketDecide.optional(),
  }),
  jira: z.strictObject({
    ...Common,
    url: HttpUrl,
    project: z.string().regex(/^[A-Z][A-Z0-9_]{0,19}$/, 'a Jira project key like SEC'),
    issueType: z.string().min(1).max(60).optional(),
    /** Basic auth with an API token (default: COUNTERSIGN_JIRA_EMAIL / COUNTERSIGN_JIRA_API_TOKEN), or an OAuth 2.0 access token when tokenEnv is given. */
    emailEnv: EnvName.optional(),
    apiTokenEnv: EnvName.optional(),
    tokenEnv: EnvName.optional(),
    /** The webhook's secret (X-Hub-Signature; unset: the webhook is refused). */
    webhookSecretEnv: EnvName.optional(),
    /** The transition (by name, or by the status it goes to) made when Countersign decides. */
    transitions: z.strictObject({ approved: z.string().min(1).max(100).optional(), rejected: z.string().min(1).max(100).optional() }).optional(),
    /** Jira accountId → Countersign operator (who changed the issue: the webhook's `user`). */
    users: z.record(z.string().regex(/^[A-Za-z0-9:_-]{1,128}$/, 'a Jira accountId'), z.string().min(1).max(100)).optional(),
    decide: TicketDecide.optional(),
  }),
} as const;

export const DEFAULT_ENV = {
  webhook: { secretEnv: 'COUNTERSIGN_WEBHOOK_SECRET' },
  email: { smtpUrlEnv: 'COUNTERSIGN_SMTP_URL' },
  slack: { tokenEnv: 'COUNTERSIGN_SLACK_BOT_TOKEN', signingSecretEnv: 'COUNTERSIGN_SLACK_SIGNING_SECRET' },
  teams: { urlEnv: 'COUNTERSIGN_TEAMS_WEBHOOK_URL', appPasswordEnv: 'COUNTERSIGN_TEAMS_APP_PASSWORD' },
  pagerduty: { routingKeyEnv: 'COUNTERSIGN_PAGERDUTY_ROUTING_KEY' },
  servicenow: { userEnv: 'COUNTERSIGN_SERVICENOW_USER', passwordEnv: 'COUNTERSIGN_SERVICENOW_PASSWORD', callbackSecretEnv: 'COUNTERSIGN_SERVICENOW_CALLBACK_SECRET' },
  jira: { emailEnv: 'COUNTERSIGN_JIRA_EMAIL', apiTokenEnv: 'COUNTERSIGN_JIRA_API_TOKEN', webhookSecretEnv: 'COUNTERSIGN_JIRA_WEBHOOK_SECRET' },
} as const;

export const BOT_FRAMEWORK_OPENID_URL = 'https://login.botframework.com/v1/.well-known/openidconfiguration';
export const BOT_FRAMEWORK_TOKEN_URL = 'https://login.microsoftonline.com/botframework.com/oauth2/v2.0/token';

interface Resolved<T extends ChannelType, S> {
  name: string;
  type: T;
  retry: RetryPolicy;
  timeoutMs: number;
  settings: S;
}

export type WebhookConfig = Resolved<'webhook', { url: string; secret: string }>;
export type EmailConfig = Resolved<'email', { from: string; to: string[]; smtpUrl: string; subjectPrefix: string }>;
export type SlackConfig = Resolved<'slack', { channel: string; token: string; signingSecret: string | undefined; apiUrl: string | undefined; users: Record<string, string> }>;
export interface TeamsBot {
  appId: string;
  password: string;
  tokenUrl: string;
  serviceUrl: string;
  conversationId: string;
}
/** `url`: the incoming webhook; `bot`: post through the Bot Connector instead (one of the two is set). */
export type TeamsConfig = Resolved<'teams', { url: string | undefined; bot: TeamsBot | undefined; appId: string | undefined; openIdMetadataUrl: string; users: Record<string, string>; tenants: string[] | undefined }>;
export type PagerDutyConfig = Resolved<'pagerduty', { routingKey: string; url: string }>;
/** What a ticket's state does: `null`, it only mirrors (the default). */
export interface TicketDecideConfig {
  field: string;
  approve: string[];
  reject: string[];
}
export type TicketAuth = { basic: { user: string; password: string } } | { bearer: string };
export type ServiceNowConfig = Resolved<
  'servicenow',
  { instanceUrl: string; table: 'incident' | 'change_request'; auth: TicketAuth; callbackSecret: string | undefined; pollMs: number | undefined; assignmentGroup: string | undefined; users: Record<string, string>; decide: TicketDecideConfig | null }
>;
export type JiraConfig = Resolved<
  'jira',
  { url: string; project: string; issueType: string; auth: TicketAuth; webhookSecret: string | undefined; transitions: { approved: string; rejected: string }; users: Record<string, string>; decide: TicketDecideConfig | null }
>;
export type ChannelConfig = WebhookConfig | EmailConfig | SlackConfig | TeamsConfig | PagerDutyConfig | ServiceNowConfig | JiraConfig;

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

/**
 * Resolves every channel in the policy against the environment. Errors name the policy key
 * (`channels.slack.tokenEnv`), as policy errors do, and never echo a secret's value.
 */
export function resolveChannels(channels: Readonly<Record<string, unknown>>, env: NodeJS.ProcessEnv): { configs: Map<string, ChannelConfig>; errors: PolicyError[] } {
  const configs = new Map<string, ChannelConfig>();
  const errors: PolicyError[] = [];
  for (const [name, raw] of Object.entries(channels)) {
    const at = `channels.${name}`;
    if (!/^[A-Za-z][A-Za-z0-9_-]{0,63}$/.test(name)) {
      errors.push({ path: at, message: 'channel names use letters, digits, _ and - and start with a letter' });
      continue;
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      errors.push({ path: at, message: 'expected a mapping of channel settings' });
      continue;
    }
    const record = raw as Record<string, unknown>;
    for (const key of Object.keys(record)) {
      if (SECRET_KEYS.test(key)) errors.push({ path: `${at}.${key}`, message: 'secrets do not belong in the policy: name the environment variable that holds it (e.g. tokenEnv, secretEnv)' });
    }
    const type = (record['type'] ?? ((CHANNEL_TYPES as readonly string[]).includes(name) ? name : undefined)) as ChannelType | undefined;
    if (type === undefined || !(CHANNEL_TYPES as readonly string[]).includes(type)) {
      errors.push({ path: `${at}.type`, message: `expected one of ${CHANNEL_TYPES.join(', ')}` });
      continue;
    }
    const parsed = Schemas[type].safeParse(record);
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        const path = [at, ...issue.path.map(String)].join('.');
        if (issue.code === 'unrecognized_keys') {
          for (const key of issue.keys) if (!SECRET_KEYS.test(key)) errors.push({ path: `${path}.${key}`, message: `unknown key for a ${type} channel` });
        } else errors.push({ path, message: issue.message });
      }
      continue;
    }
    const c = parsed.data as Record<string, unknown> & { retry?: { attempts?: number; backoff?: string }; timeout?: string };
    const secret = (key: string, fallback: string): string | undefined => {
      const envName = (c[key] as string | undefined) ?? fallback;
      const value = env[envName];
      if (!value) errors.push({ path: `${at}.${key}`, message: `environment variable ${envName} is not set` });
      return value;
    };
    const common = {
      name,
      retry: {
        maxAttempts: c.retry?.attempts ?? DEFAULT_RETRY.maxAttempts,
        baseMs: c.retry?.backoff ? (parseDuration(c.retry.backoff) as number) : DEFAULT_RETRY.baseMs,
        capMs: DEFAULT_RETRY.capMs,
      },
      timeoutMs: c.timeout ? (parseDuration(c.timeout) as number) : 10_000,
    };
    const d = DEFAULT_ENV;
    switch (type) {
      case 'webhook': {
        const s = secret('secretEnv', d.webhook.secretEnv);
        if (s !== undefined && !/^whsec_[A-Za-z0-9+/=]{16,}$/.test(s)) {
          errors.push({ path: `${at}.secretEnv`, message: 'the webhook secret must look like whsec_<base64> (Standard Webhooks)' });
        }
        if (s !== undefined) configs.set(name, { ...common, type, settings: { url: c['url'] as string, secret: s } });
        break;
      }
      case 'email': {
        const s = secret('smtpUrlEnv', d.email.smtpUrlEnv);
        if (s !== undefined && !/^smtps?:\/\//.test(s)) errors.push({ path: `${at}.smtpUrlEnv`, message: 'the SMTP URL must start with smtp:// or smtps://' });
        if (s !== undefined) {
          configs.set(name, { ...common, type, settings: { from: c['from'] as string, to: c['to'] as string[], smtpUrl: s, subjectPrefix: (c['subjectPrefix'] as string | undefined) ?? '[Countersign]' } });
        }
        break;
      }
      case 'slack': {
        const token = secret('tokenEnv', d.slack.tokenEnv);
        const signingEnv = (c['signingSecretEnv'] as string | undefined) ?? d.slack.signingSecretEnv;
        if (token !== undefined) {
          configs.set(name, {
            ...common,
            type,
            settings: {
              channel: c['channel'] as string,
              token,
              signingSecret: env[signingEnv] || undefined,
              apiUrl: c['apiUrl'] as string | undefined,
              users: (c['users'] as Record<string, string> | undefined) ?? {},
            },
          });
        }
        break;
      }
      case 'teams': {
        const conversation = c['conversation'] as { serviceUrl: string; id: string } | undefined;
        const appId = c['appId'] as string | undefined;
        let bot: TeamsBot | undefined;
        let url: string | undefined;
        if (conversation) {
          if (appId === undefined) errors.push({ path: `${at}.appId`, message: 'posting into a conversation is done as the bot: set appId' });
          const password = secret('appPasswordEnv', d.teams.appPasswordEnv);
          if (appId !== undefined && password !== undefined) {
            bot = { appId, password, tokenUrl: (c['tokenUrl'] as string | undefined) ?? BOT_FRAMEWORK_TOKEN_URL, serviceUrl: conversation.serviceUrl.endsWith('/') ? conversation.serviceUrl : `${conversation.serviceUrl}/`, conversationId: conversation.id };
          }
        } else {
          url = secret('urlEnv', d.teams.urlEnv);
          if (url !== undefined && !/^https?:\/\//.test(url)) errors.push({ path: `${at}.urlEnv`, message: 'the Teams webhook URL must be an http(s) URL' });
        }
        if (url !== undefined || bot !== undefined) {
          configs.set(name, {
            ...common,
            type,
            settings: {
              url,
              bot,
              appId,
              openIdMetadataUrl: (c['openIdMetadataUrl'] as string | undefined) ?? BOT_FRAMEWORK_OPENID_URL,
              users: (c['users'] as Record<string, string> | undefined) ?? {},
              tenants: (c['tenants'] as string[] | undefined)?.map((t) => t.toLowerCase()),
            },
          });
        }
        break;
      }
      case 'servicenow': {
        const auth = ticketAuth(c, secret, d.servicenow.userEnv, d.servicenow.passwordEnv, 'userEnv', 'passwordEnv');
        const table = (c['table'] as 'incident' | 'change_request' | undefined) ?? 'incident';
        const decide = c['decide'] as { field?: string; approve: string[]; reject?: string[] } | undefined;
        if (auth) {
          configs.set(name, {
            ...common,
            type,
            settings: {
              instanceUrl: (c['instanceUrl'] as string).replace(/\/+$/, ''),
              table,
              auth,
              callbackSecret: env[(c['callbackSecretEnv'] as string | undefined) ?? d.servicenow.callbackSecretEnv] || undefined,
              pollMs: c['poll'] ? (parseDuration(c['poll'] as string) as number) : undefined,
              assignmentGroup: c['assignmentGroup'] as string | undefined,
              users: (c['users'] as Record<string, string> | undefined) ?? {},
              decide: decide ? { field: decide.field ?? (table === 'change_request' ? 'approval' : 'state'), approve: decide.approve, reject: decide.reject ?? [] } : null,
            },
          });
        }
        break;
      }
      case 'jira': {
        const auth = ticketAuth(c, secret, d.jira.emailEnv, d.jira.apiTokenEnv, 'emailEnv', 'apiTokenEnv');
        const decide = c['decide'] as { field?: string; approve: string[]; reject?: string[] } | undefined;
        if (decide?.field !== undefined) errors.push({ path: `${at}.decide.field`, message: 'a Jira channel decides on the issue status; field is for ServiceNow' });
        const transitions = (c['transitions'] as { approved?: string; rejected?: string } | undefined) ?? {};
        if (auth) {
          configs.set(name, {
            ...common,
            type,
            settings: {
              url: (c['url'] as string).replace(/\/+$/, ''),
              project: c['project'] as string,
              issueType: (c['issueType'] as string | undefined) ?? 'Task',
              auth,
              webhookSecret: env[(c['webhookSecretEnv'] as string | undefined) ?? d.jira.webhookSecretEnv] || undefined,
              transitions: { approved: transitions.approved ?? 'Done', rejected: transitions.rejected ?? "Won't Do" },
              users: (c['users'] as Record<string, string> | undefined) ?? {},
              decide: decide ? { field: 'status', approve: decide.approve, reject: decide.reject ?? [] } : null,
            },
          });
        }
        break;
      }
      case 'pagerduty': {
        const key = secret('routingKeyEnv', d.pagerduty.routingKeyEnv);
        if (key !== undefined) configs.set(name, { ...common, type, settings: { routingKey: key, url: (c['url'] as string | undefined) ?? PAGERDUTY_EVENTS_URL } });
        break;
      }
    }
  }
  return { configs, errors };
}

/** A ticketing channel's credentials: a bearer token when `tokenEnv` is named, else basic auth from the two variables. */
function ticketAuth(
  c: Record<string, unknown>,
  secret: (key: string, fallback: string) => string | undefined,
  userDefault: string,
  passwordDefault: string,
  userKey: string,
  passwordKey: string,
): TicketAuth | undefined {
  if (c['tokenEnv'] !== undefined) {
    const token = secret('tokenEnv', c['tokenEnv'] as string);
    return token === undefined ? undefined : { bearer: token };
  }
  const user = secret(userKey, userDefault);
  const password = secret(passwordKey, passwordDefault);
  return user === undefined || password === undefined ? undefined : { basic: { user, password } };
}

/** The webhook channels that witness checkpoints (`checkpoints: true`), from the policy's raw `channels`. */
export function checkpointChannelNames(channels: Readonly<Record<string, unknown>>): string[] {
  return Object.entries(channels)
    .filter(([name, raw]) => {
      if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return false;
      const record = raw as Record<string, unknown>;
      return (record['type'] ?? name) === 'webhook' && record['checkpoints'] === true;
    })
    .map(([name]) => name);
}

/** The policy check the engine runs before activating a policy: channel settings, and `notify` names that exist. */
export function channelPolicyCheck(env: NodeJS.ProcessEnv): (policy: Policy) => PolicyError[] {
  return (policy) => {
    const { errors } = resolveChannels(policy.channels, env);
    policy.escalation.levels.forEach((level, i) => {
      level.notify.forEach((name, j) => {
        if (!Object.hasOwn(policy.channels, name)) {
          const known = Object.keys(policy.channels);
          errors.push({ path: `escalation.levels[${i}].notify[${j}]`, message: `no channel named "${name}" under channels${known.length ? ` (known: ${known.join(', ')})` : ' (none configured)'}` });
        }
      });
    });
    for (const risk of ['low', 'medium', 'high', 'critical'] as const) {
      (policy.levels[risk].notify ?? []).forEach((name, j) => {
        if (!Object.hasOwn(policy.channels, name)) {
          const known = Object.keys(policy.channels);
          errors.push({ path: `levels.${risk}.notify[${j}]`, message: `no channel named "${name}" under channels${known.length ? ` (known: ${known.join(', ')})` : ' (none configured)'}` });
        }
      });
    }
    policy.guard.notify.forEach((name, j) => {
      if (!Object.hasOwn(policy.channels, name)) {
        const known = Object.keys(policy.channels);
        errors.push({ path: `guard.notify[${j}]`, message: `no channel named "${name}" under channels${known.length ? ` (known: ${known.join(', ')})` : ' (none configured)'}` });
        return;
      }
      const type = (policy.channels[name] as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && !GUARD_CHANNEL_TYPES.includes(type)) {
        errors.push({ path: `guard.notify[${j}]`, message: `channel "${name}" is a ${type} channel; guard notices go to ${GUARD_CHANNEL_TYPES.join(', ')} channels` });
      }
    });
    return errors;
  };
}
