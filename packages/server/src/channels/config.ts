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
  teams: z.strictObject({ ...Common, urlEnv: EnvName.optional() }),
  pagerduty: z.strictObject({ ...Common, routingKeyEnv: EnvName.optional(), url: HttpUrl.optional() }),
} as const;

export const DEFAULT_ENV = {
  webhook: { secretEnv: 'COUNTERSIGN_WEBHOOK_SECRET' },
  email: { smtpUrlEnv: 'COUNTERSIGN_SMTP_URL' },
  slack: { tokenEnv: 'COUNTERSIGN_SLACK_BOT_TOKEN', signingSecretEnv: 'COUNTERSIGN_SLACK_SIGNING_SECRET' },
  teams: { urlEnv: 'COUNTERSIGN_TEAMS_WEBHOOK_URL' },
  pagerduty: { routingKeyEnv: 'COUNTERSIGN_PAGERDUTY_ROUTING_KEY' },
} as const;

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
export type TeamsConfig = Resolved<'teams', { url: string }>;
export type PagerDutyConfig = Resolved<'pagerduty', { routingKey: string; url: string }>;
export type ChannelConfig = WebhookConfig | EmailConfig | SlackConfig | TeamsConfig | PagerDutyConfig;

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
        const url = secret('urlEnv', d.teams.urlEnv);
        if (url !== undefined && !/^https?:\/\//.test(url)) errors.push({ path: `${at}.urlEnv`, message: 'the Teams webhook URL must be an http(s) URL' });
        if (url !== undefined) configs.set(name, { ...common, type, settings: { url } });
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
