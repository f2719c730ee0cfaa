/**
 * `POST /v1/integrations/teams/actions`: the Bot Framework's invoke for an Adaptive Card
 * `Action.Execute` (name `adaptiveCard/action`), sent to the bot's messaging endpoint.
 *
 * Authentication is the Bot Framework's (Bot Connector → bot): `Authorization: Bearer <JWT>`,
 * signed (RS256) by a key from the JWKS that the OpenID metadata document names (`jwks_uri`);
 * the key must endorse the activity's `channelId`; issuer `https://api.botframework.com`,
 * audience the bot's App ID (`channels.<teams>.appId`), `exp`/`nbf` with 5 minutes of skew, and
 * the token's `serviceUrl` claim equal to the activity's. The activity must be from Teams
 * (`channelId: msteams`; elsewhere the client writes `from`) and, when `channels.<teams>.tenants`
 * is set, from one of those tenants (`channelData.tenant.id`). Anything missing, unreachable or wrong
 * is 401 BAD_SIGNATURE and changes nothing (fail closed). The activity id is remembered in the
 * `nonces` table (shared by every process): the same invoke twice is refused as a replay.
 *
 * The acting user (`from.aadObjectId`, else `from.id`) must map to an operator
 * (`channels.<teams>.users`); the vote is then `engine.review` as that operator (inbound.ts).
 * The answer is the documented AdaptiveCardInvokeResponse: `{statusCode: 200, type:
 * "application/vnd.microsoft.card.adaptive", value: <the refreshed card>}`; a refusal by the gate is
 * `{statusCode: 4xx, type: "application/vnd.microsoft.error", value: {code, message}}`.
 */
import { CountersignError, renderNotification, type ApprovalRequest } from '@countersign/core';
import type { OpenAPIHono } from '@hono/zod-openapi';
import { decodeProtectedHeader, importJWK, jwtVerify, type JWK } from 'jose';
import type { Engine } from '../engine/engine.ts';
import type { TeamsConfig } from './config.ts';
import { mappedOperator, REQUEST_ID, shownId, voteAs } from './inbound.ts';
import type { ChannelRegistry } from './registry.ts';
import { adaptiveCard } from './teams.ts';
import { STATUS_OF, toCountersignError } from '../http/errors.ts';
import { type ApiEnv as Env } from '../http/routes/contract.ts';

export const TEAMS_ACTIONS_PATH = '/v1/integrations/teams/actions';
export const TEAMS_MAX_BODY = 64 * 1024;
export const BOT_FRAMEWORK_ISSUER = 'https://api.botframework.com';
const SKEW_SECONDS = 5 * 60;
/** Keys are re-read this often (Microsoft rotates them; the docs ask for at least daily), and at most once a minute for an unknown key id. */
const KEYS_TTL_MS = 60 * 60 * 1000;
const UNKNOWN_KID_REFETCH_MS = 60 * 1000;
/** While the metadata cannot be read, keys fetched less than this long ago still verify (Microsoft asks for a daily refresh). */
const KEYS_MAX_STALE_MS = 24 * 60 * 60 * 1000;
const FETCH_TIMEOUT_MS = 5_000;

interface BotKey extends JWK {
  kid?: string;
  endorsements?: string[];
}

interface KeySet {
  keys: BotKey[];
  fetchedAt: number;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  const text = await res.text();
  if (text.length > 1024 * 1024) throw new Error(`${url} answered more than 1 MiB`);
  return JSON.parse(text) as unknown;
}

/** Loopback hosts, where a plain-http key URL is accepted (local stand-ins in tests); anywhere else, https only. */
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
function keyUrlAllowed(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'https:' || (u.protocol === 'http:' && LOOPBACK.has(u.hostname));
  } catch {
    return false;
  }
}

/** After a failed key load, nothing is fetched again for this long (doubling per failure, up to FAILURE_BACKOFF_MAX_MS). */
const FAILURE_BACKOFF_MS = 5_000;
const FAILURE_BACKOFF_MAX_MS = 5 * 60 * 1000;

/**
 * The signing keys named by one OpenID metadata document, cached. Outbound fetches are bounded
 * whatever unauthenticated callers send: one load at a time per document (concurrent callers
 * share it), a failed load is remembered and answered from memory for a back-off (5 s doubling
 * to 5 min), and an unknown key id refetches at most once a minute.
 */
export class BotKeys {
  private readonly sets = new Map<string, KeySet>();
  private readonly loading = new Map<string, Promise<KeySet>>();
  private readonly failures = new Map<string, { until: number; delay: number; error: Error }>();
  private readonly attempted = new Map<string, number>();

  constructor(private readonly clock: () => number) {}

  private async fetchSet(metadataUrl: string): Promise<KeySet> {
    if (!keyUrlAllowed(metadataUrl)) throw new Error('the OpenID metadata URL is not https');
    const metadata = (await getJson(metadataUrl)) as { jwks_uri?: unknown };
    if (typeof metadata?.jwks_uri !== 'string') throw new Error('the OpenID metadata has no jwks_uri');
    if (!keyUrlAllowed(metadata.jwks_uri)) throw new Error('the OpenID metadata\'s jwks_uri is not https');
    const jwks = (await getJson(metadata.jwks_uri)) as { keys?: unknown };
    if (!Array.isArray(jwks?.keys)) throw new Error('the JWKS has no keys');
    return { keys: jwks.keys as BotKey[], fetchedAt: this.clock() };
  }

  /** One load per document at a time; a failure is remembered for its back-off. */
  private load(metadataUrl: string): Promise<KeySet> {
    const inflight = this.loading.get(metadataUrl);
    if (inflight) return inflight;
    const failed = this.failures.get(metadataUrl);
    if (failed && this.clock() < failed.until) return Promise.reject(failed.error);
    this.attempted.set(metadataUrl, this.clock());
    const p = this.fetchSet(metadataUrl).then(
      (set) => {
        this.failures.delete(metadataUrl);
        this.sets.set(metadataUrl, set);
        return set;
      },
      (err: unknown) => {
        const delay = failed ? Math.min(failed.delay * 2, FAILURE_BACKOFF_MAX_MS) : FAILURE_BACKOFF_MS;
        const error = err instanceof Error ? err : new Error(String(err));
        this.failures.set(metadataUrl, { until: this.clock() + delay, delay, error });
        throw error;
      },
    );
    const tracked = p.finally(() => this.loading.delete(metadataUrl));
    this.loading.set(metadataUrl, tracked);
    return tracked;
  }

  async key(metadataUrl: string, kid: string): Promise<BotKey | undefined> {
    let set = this.sets.get(metadataUrl);
    if (!set || this.clock() - set.fetchedAt > KEYS_TTL_MS) {
      try {
        set = await this.load(metadataUrl);
      } catch (err) {
        // Keys past their hour (but under a day old) are still Microsoft's: use them while the document cannot be read.
        if (!set || this.clock() - set.fetchedAt > KEYS_MAX_STALE_MS) throw err;
      }
    }
    let found = set.keys.find((k) => k.kid === kid);
    if (!found && this.clock() - (this.attempted.get(metadataUrl) ?? 0) > UNKNOWN_KID_REFETCH_MS) {
      found = (await this.load(metadataUrl)).keys.find((k) => k.kid === kid);
    } else if (!found && this.loading.has(metadataUrl)) {
      found = (await this.load(metadataUrl)).keys.find((k) => k.kid === kid);
    }
    return found;
  }
}

interface InvokeActivity {
  type?: unknown;
  name?: unknown;
  id?: unknown;
  channelId?: unknown;
  serviceUrl?: unknown;
  from?: { id?: unknown; aadObjectId?: unknown; name?: unknown };
  channelData?: { tenant?: { id?: unknown } };
  value?: { action?: { type?: unknown; verb?: unknown; data?: { requestId?: unknown } } };
}

const bad = (message: string) => new CountersignError('BAD_SIGNATURE', message);

/**
 * Verifies the bearer token for one Teams channel; returns nothing, throws BAD_SIGNATURE. The
 * activity's channelId and serviceUrl are checked against the token and its key.
 */
export async function verifyBotToken(keys: BotKeys, config: TeamsConfig, token: string, activity: InvokeActivity, now: number): Promise<void> {
  // Only Teams: on Web Chat, Direct Line or the emulator the client itself writes `from` (any
  // aadObjectId it likes), and the Bot Connector signs that activity all the same.
  if (activity.channelId !== 'msteams') throw bad(`only Microsoft Teams invokes are accepted (channelId "${shownId(typeof activity.channelId === 'string' ? activity.channelId : '')}")`);
  if (config.settings.tenants) {
    const tenant = activity.channelData?.tenant?.id;
    if (typeof tenant !== 'string' || !config.settings.tenants.includes(tenant.toLowerCase())) throw bad(`the invoke's tenant (channelData.tenant.id) is not one of channels.${config.name}.tenants`);
  }
  let kid: string | undefined;
  let alg: string | undefined;
  try {
    const header = decodeProtectedHeader(token);
    kid = header.kid;
    alg = header.alg;
  } catch {
    throw bad('the Bot Framework token is not a JWT');
  }
  if (alg !== 'RS256') throw bad('the Bot Framework token is not signed with RS256');
  if (typeof kid !== 'string' || kid.length === 0 || kid.length > 200) throw bad('the Bot Framework token names no signing key');
  let jwk: BotKey | undefined;
  try {
    jwk = await keys.key(config.settings.openIdMetadataUrl, kid);
  } catch (err) {
    // Fail closed: keys that cannot be read verify nothing.
    throw bad(`the Bot Framework signing keys could not be read: ${(err as Error).message}`);
  }
  if (!jwk) throw bad('the Bot Framework token is signed by a key the OpenID metadata does not list');
  const channelId = typeof activity.channelId === 'string' ? activity.channelId : '';
  if (!Array.isArray(jwk.endorsements) || !jwk.endorsements.includes(channelId)) throw bad(`the signing key does not endorse channel "${shownId(channelId)}"`);
  let claims: Record<string, unknown>;
  try {
    const key = await importJWK({ kty: jwk.kty, n: jwk.n, e: jwk.e } as JWK, 'RS256');
    const verified = await jwtVerify(token, key, {
      algorithms: ['RS256'],
      issuer: BOT_FRAMEWORK_ISSUER,
      audience: config.settings.appId as string,
      clockTolerance: SKEW_SECONDS,
      currentDate: new Date(now),
      requiredClaims: ['exp', 'iss', 'aud'],
    });
    claims = verified.payload as Record<string, unknown>;
  } catch (err) {
    throw bad(`the Bot Framework token does not verify: ${(err as { code?: string }).code ?? (err as Error).message}`);
  }
  if (typeof claims['serviceUrl'] !== 'string' || claims['serviceUrl'] !== activity.serviceUrl) throw bad('the token\'s serviceUrl claim is not the activity\'s serviceUrl');
}

const invokeError = (statusCode: number, code: string, message: string) => ({ statusCode, type: 'application/vnd.microsoft.error', value: { code, message } });

export function mountTeamsActions(app: OpenAPIHono<Env>, engine: Engine, channels: ChannelRegistry, options: { reviewBase?: string | undefined } = {}): void {
  const keys = new BotKeys(() => engine.clock());
  app.post(TEAMS_ACTIONS_PATH, async (c) => {
    const teams = channels.configsOf('teams').filter((t) => t.settings.appId !== undefined);
    if (teams.length === 0) throw new CountersignError('NOT_FOUND', 'no Teams channel with an appId is configured');
    const authorization = c.req.header('authorization') ?? '';
    const token = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(authorization)?.[1];
    if (!token) throw bad('the invoke carries no Bot Framework bearer token');
    const body = await c.req.text();
    if (body.length > TEAMS_MAX_BODY) throw new CountersignError('BODY_TOO_LARGE', `a Teams invoke is at most ${TEAMS_MAX_BODY} bytes`);
    let activity: InvokeActivity;
    try {
      activity = JSON.parse(body) as InvokeActivity;
    } catch {
      throw new CountersignError('BAD_JSON', 'the Teams activity is not JSON');
    }
    if (activity === null || typeof activity !== 'object') throw new CountersignError('BAD_JSON', 'the Teams activity is not an object');

    // The token names its audience; the channel is the one whose appId it is signed for.
    let config: TeamsConfig | undefined;
    let lastError: unknown;
    for (const candidate of teams) {
      try {
        await verifyBotToken(keys, candidate, token, activity, engine.clock());
        config = candidate;
        break;
      } catch (err) {
        lastError = err;
      }
    }
    if (!config) throw lastError;
    const activityId = typeof activity.id === 'string' && activity.id.length > 0 && activity.id.length <= 200 ? activity.id : undefined;
    if (!activityId) throw bad('the Teams activity has no id');
    if (!(await engine.claimNonce('teams', `${config.name}:${activityId}`, 2 * SKEW_SECONDS * 1000 + 3_600_000))) {
      throw bad('this Teams activity was already received (replay)');
    }

    if (activity.type !== 'invoke' || activity.name !== 'adaptiveCard/action' || activity.value?.action?.type !== 'Action.Execute') {
      return c.json(invokeError(400, 'BadRequest', 'only adaptiveCard/action invokes of Action.Execute are handled'), 200);
    }
    const requestId = activity.value.action.data?.requestId;
    const verb = activity.value.action.verb;
    if (typeof requestId !== 'string' || !REQUEST_ID.test(requestId)) return c.json(invokeError(400, 'BAD_ID', 'the card action does not name a request'), 200);
    if (typeof verb !== 'string') return c.json(invokeError(400, 'VALIDATION_FAILED', 'the card action has no verb'), 200);
    const fromAad = activity.from?.aadObjectId;
    const fromId = activity.from?.id;
    const user = typeof fromAad === 'string' && fromAad ? fromAad : typeof fromId === 'string' ? fromId : '';
    const via = `via Teams (user ${shownId(user)})`;
    const vote =
      verb === 'approve'
        ? { verdict: 'approve' as const, via }
        : verb === 'reject'
          ? { verdict: 'reject' as const, via: `in Teams; ${via}` }
          : verb.startsWith('alternative:')
            ? { verdict: 'approve' as const, alternative: verb.slice('alternative:'.length), via }
            : undefined;
    if (!vote) return c.json(invokeError(400, 'VALIDATION_FAILED', `unknown card action "${shownId(verb)}"`), 200);
    let decided: ApprovalRequest;
    try {
      const principal = await mappedOperator(engine, config.settings.users, user, 'Teams');
      decided = await voteAs(engine, principal, requestId, vote);
    } catch (err) {
      const e = toCountersignError(err, () => {});
      return c.json(invokeError(STATUS_OF[e.code] ?? 500, e.code, e.message), 200);
    }
    const reviewBase = options.reviewBase ?? new URL(c.req.url).origin;
    const card = adaptiveCard(renderNotification(decided, decided.status === 'pending' ? 'requested' : 'decided', { reviewBase, now: engine.clock() }), { execute: true });
    return c.json({ statusCode: 200, type: 'application/vnd.microsoft.card.adaptive', value: card }, 200);
  });
}
