/**
 * `countersign config`: the resolved client configuration and, when a server answers, its
 * health, who the token belongs to and the active policy. The token itself is never printed.
 */
import type { Command } from 'commander';
import { CountersignError } from '@countersign/core/errors';
import { clientFrom, print, printJson, withClientOptions, type CommonFlags } from '../common.ts';
import { safe } from '../format.ts';

interface Health {
  status: string;
  version?: string;
  policyVersion?: number;
  database?: string;
}

interface Me {
  kind: 'agent' | 'operator';
  id: string;
  name: string;
  roles: string[];
}

interface PolicyInfo {
  version: number;
  hash: string;
  source: string;
}

type Outcome<T> = { ok: true; value: T } | { ok: false; error: CountersignError };

async function attempt<T>(fn: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await fn() };
  } catch (err) {
    if (err instanceof CountersignError) return { ok: false, error: err };
    throw err;
  }
}

const errorJson = (e: CountersignError) => ({ code: e.code, message: e.message });

export function registerConfigCommand(program: Command): void {
  withClientOptions(
    program
      .command('config')
      .description('show the client configuration (URL, token set?) and, if reachable, server health and active policy')
      .option('--check', 'exit 1 when the server is unreachable, unhealthy or refuses the token')
      .option('--effective', 'show the settings `countersign serve` would run with here (log level, policy settings the environment sets) and where each comes from'),
  ).action(async (flags: CommonFlags & { check?: boolean; effective?: boolean }) => {
    if (flags.effective) return printEffective(flags.json === true);
    const client = clientFrom(flags);
    const health = await attempt(() => client.get<Health>('/healthz', {}, { auth: false }));
    const reachable = health.ok || health.error.code !== 'NETWORK_ERROR';
    const authed = reachable && client.token !== undefined;
    const me = authed ? await attempt(() => client.get<Me>('/v1/me')) : undefined;
    const policy = me?.ok && me.value.kind === 'operator' ? await attempt(() => client.get<PolicyInfo>('/v1/policy')) : undefined;

    if (flags.json) {
      printJson({
        url: client.baseUrl,
        urlSource: client.sources.url,
        tokenSet: client.token !== undefined,
        tokenPrefix: client.token === undefined ? null : client.token.slice(0, 6),
        tokenSource: client.sources.token,
        server: health.ok ? { reachable: true, ...health.value } : { reachable, error: errorJson(health.error) },
        caller: me === undefined ? null : me.ok ? me.value : { error: errorJson(me.error) },
        policy: policy === undefined ? null : policy.ok ? { version: policy.value.version, hash: policy.value.hash, source: policy.value.source } : { error: errorJson(policy.error) },
      });
    } else {
      const source = { flag: '--url', env: 'COUNTERSIGN_URL', default: 'default' }[client.sources.url];
      print(`url:     ${safe(client.baseUrl)} (${source})`);
      print(
        client.token === undefined
          ? 'token:   not set (set COUNTERSIGN_TOKEN or pass --token)'
          : `token:   set, ${safe(client.tokenHint)} (${client.sources.token === 'flag' ? '--token' : 'COUNTERSIGN_TOKEN'})`,
      );
      if (health.ok) {
        const h = health.value;
        const extra = [h.version ? `version ${h.version}` : '', h.database ? `database ${h.database}` : ''].filter(Boolean).join(', ');
        print(`server:  ${safe(h.status)}${extra ? ` (${safe(extra)})` : ''}`);
      } else {
        print(`server:  ${reachable ? 'unhealthy' : 'unreachable'} (${health.error.code}: ${safe(health.error.message)})`);
      }
      if (me) print(me.ok ? `caller:  ${safe(me.value.kind)} ${safe(me.value.name)} (${safe(me.value.id)})${me.value.roles.length ? `, roles ${me.value.roles.map(safe).join(', ')}` : ''}` : `caller:  ${me.error.code}: ${safe(me.error.message)}`);
      if (policy) {
        print(
          policy.ok
            ? `policy:  v${policy.value.version}, sha256 ${safe(policy.value.hash.slice(0, 16))}…, from ${safe(policy.value.source)}`
            : `policy:  ${policy.error.code}: ${safe(policy.error.message)}`,
        );
      } else if (me?.ok && me.value.kind === 'agent') {
        print('policy:  (needs an operator token)');
      }
    }

    if (flags.check) {
      if (!health.ok) throw health.error;
      if (health.value.status !== 'ok') throw new CountersignError('STORE_UNAVAILABLE', `server at ${client.baseUrl} reports status "${safe(health.value.status)}"`);
      if (client.token === undefined) throw new CountersignError('UNAUTHENTICATED', 'no credential: set COUNTERSIGN_TOKEN or pass --token');
      if (me && !me.ok) throw me.error;
    }
  });
}

/** `--effective`: computed here, with the server's own config pipeline (loaded only now: it is the server stack). */
async function printEffective(json: boolean): Promise<void> {
  const [{ effectiveSettings }, { processEnvironment }] = await Promise.all([import('../../effective.ts'), import('../../environment.ts')]);
  const effective = effectiveSettings(processEnvironment(), process.cwd());
  if (json) {
    printJson(effective);
    return;
  }
  print(`policy: ${safe(effective.policySource)}`);
  const width = Math.max(...effective.rows.map((r) => r.key.length));
  for (const row of effective.rows) {
    const value = Array.isArray(row.value) ? (row.value.length === 0 ? '[]' : row.value.join(', ')) : String(row.value);
    print(`  ${row.key.padEnd(width)}  ${safe(value)}  (${row.source}${row.source === 'env' ? `: ${row.variable}` : `; env ${row.variable}`})`);
  }
}
