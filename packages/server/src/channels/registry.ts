/**
 * The channels of the active policy, built once per policy version. Secrets come from the
 * environment given here (the runtime passes the config's snapshot; none: no secrets, so channels needing one fail closed).
 */
import type { Engine } from '../engine/engine.ts';
import { resolveChannels, type ChannelConfig } from './config.ts';
import { emailChannel } from './email.ts';
import { pagerDutyChannel } from './pagerduty.ts';
import { slackChannel } from './slack.ts';
import { jiraChannel } from './jira.ts';
import { serviceNowChannel } from './servicenow.ts';
import { teamsChannel } from './teams.ts';
import type { Channel } from './types.ts';
import { webhookChannel } from './webhook.ts';

export function createChannel(config: ChannelConfig): Channel {
  switch (config.type) {
    case 'webhook':
      return webhookChannel(config);
    case 'email':
      return emailChannel(config);
    case 'slack':
      return slackChannel(config);
    case 'teams':
      return teamsChannel(config);
    case 'pagerduty':
      return pagerDutyChannel(config);
    case 'servicenow':
      return serviceNowChannel(config);
    case 'jira':
      return jiraChannel(config);
  }
}

export class ChannelRegistry {
  private version = -1;
  private configs = new Map<string, ChannelConfig>();
  private errors = new Map<string, string>();
  private built = new Map<string, Channel>();

  constructor(
    private readonly engine: Engine,
    private readonly env: Readonly<Record<string, string | undefined>> = {},
  ) {}

  private refresh(): void {
    const active = this.engine.policy;
    if (active.version === this.version) return;
    const { configs, errors } = resolveChannels(active.policy.channels, this.env);
    const old = this.built;
    this.version = active.version;
    this.configs = configs;
    this.errors = new Map(errors.map((e) => [e.path.split('.')[1] ?? '', `${e.path}: ${e.message}`]));
    this.built = new Map();
    for (const channel of old.values()) void channel.close?.();
  }

  /** The channel, or a reason it cannot be built (a configuration error: not worth retrying). */
  get(name: string): { channel: Channel; config: ChannelConfig } | { error: string } {
    this.refresh();
    const config = this.configs.get(name);
    if (!config) return { error: this.errors.get(name) ?? `no channel named "${name}" in the active policy` };
    let channel = this.built.get(name);
    if (!channel) {
      channel = createChannel(config);
      this.built.set(name, channel);
    }
    return { channel, config };
  }

  /** Every configured Slack channel (the actions endpoint checks signatures and maps users with them). */
  slackConfigs(): Extract<ChannelConfig, { type: 'slack' }>[] {
    this.refresh();
    return [...this.configs.values()].filter((c): c is Extract<ChannelConfig, { type: 'slack' }> => c.type === 'slack');
  }

  /** Every configured channel of one type (Teams invokes, ticket callbacks and polling use them). */
  configsOf<T extends ChannelConfig['type']>(type: T): Extract<ChannelConfig, { type: T }>[] {
    this.refresh();
    return [...this.configs.values()].filter((c): c is Extract<ChannelConfig, { type: T }> => c.type === type);
  }

  async close(): Promise<void> {
    await Promise.all([...this.built.values()].map((c) => c.close?.()));
    this.built.clear();
  }
}
