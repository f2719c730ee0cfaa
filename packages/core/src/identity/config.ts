/**
 * The identity file (`COUNTERSIGN_IDENTITY_FILE`, YAML): single sign-on with OpenID Connect,
 * SCIM provisioning, and the one map from the identity provider's groups to Countersign roles
 * that both use. Parsed once at start into a frozen value; a file that does not validate is
 * refused as a whole with every wrong key named, and the server does not start.
 *
 *   oidc:
 *     issuer: https://login.example.com
 *     clientId: countersign
 *     clientSecretEnv: COUNTERSIGN_OIDC_CLIENT_SECRET   # the secret itself never sits in the file
 *     redirectUrl: https://countersign.example.com/sso/callback
 *     groupsClaim: groups
 *     allowedDomains: [example.com]
 *   scim: { enabled: true }
 *   roleMap:
 *     sec-leads: [lead, reviewer]
 *     soc: [reviewer]
 *     on-call: []        # carried as an operator group (policy routing) without a role
 */
import { asciiLower } from './claims.ts';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { parseDuration } from '../duration.ts';
import { CountersignError } from '../errors.ts';
import { Role } from '../schemas.ts';

const ENV_NAME = /^[A-Z_][A-Z0-9_]{0,99}$/;
const DOMAIN = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$/;

const HttpUrl = z.url({ protocol: /^https?$/ }).max(2000);

const OidcSection = z.strictObject({
  issuer: HttpUrl,
  clientId: z.string().min(1).max(500),
  /** The variable holding the client secret (default COUNTERSIGN_OIDC_CLIENT_SECRET); unused with `tokenEndpointAuth: none`. */
  clientSecretEnv: z.string().regex(ENV_NAME, 'an environment variable name (A-Z, 0-9, _)').optional(),
  tokenEndpointAuth: z.enum(['client_secret_basic', 'client_secret_post', 'none']).default('client_secret_basic'),
  redirectUrl: HttpUrl,
  scopes: z.array(z.string().min(1).max(100).regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'a scope token')).max(20).default(['openid', 'email', 'profile']),
  groupsClaim: z.string().min(1).max(200).default('groups'),
  /** The claim holding the address (default email). Any other claim (Entra ID's preferred_username) needs requireVerifiedEmail: false, said explicitly: email_verified vouches for `email` only. */
  emailClaim: z.string().min(1).max(200).default('email'),
  /** Email domains allowed to sign in (exact, lower case; no wildcards). At least one. */
  allowedDomains: z.array(z.string().transform((d) => asciiLower(d.trim())).pipe(z.string().regex(DOMAIN, 'a domain such as example.com'))).min(1).max(100),
  /** Refuse an ID token whose `email_verified` is not `true` (default). `false`: refuse only an explicit `false` (Entra ID sends no such claim). */
  requireVerifiedEmail: z.boolean().default(true),
  /** How long a dashboard session from a sign-in lasts (default 8h). */
  sessionTtl: z.string().default('8h'),
  /** Text of the dashboard's button. */
  label: z.string().min(1).max(60).default('Sign in with SSO'),
}).superRefine((o, ctx) => {
  // Review F7: email_verified vouches for `email` only; another claim is verified by nothing in the token.
  if (o.emailClaim !== 'email' && o.requireVerifiedEmail) {
    ctx.addIssue({ code: 'custom', path: ['requireVerifiedEmail'], message: `email_verified vouches for the email claim only, not for ${o.emailClaim}: set requireVerifiedEmail: false to accept ${o.emailClaim} unverified (the nOAuth risk: see the README), or use emailClaim: email` });
  }
});

const ScimSection = z.strictObject({ enabled: z.boolean().default(true) });

const GroupName = z.string().min(1).max(256);

export const IdentityFile = z.strictObject({
  oidc: OidcSection.optional(),
  scim: ScimSection.optional(),
  /** Group (name, or id as the provider sends it) → the roles its members get. Roles are the union over an operator's groups. */
  roleMap: z.record(GroupName, z.array(Role).max(6)),
});

export interface OidcSettings {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecretEnv: string;
  readonly tokenEndpointAuth: 'client_secret_basic' | 'client_secret_post' | 'none';
  readonly redirectUrl: string;
  readonly scopes: readonly string[];
  readonly groupsClaim: string;
  readonly emailClaim: string;
  readonly allowedDomains: readonly string[];
  readonly requireVerifiedEmail: boolean;
  readonly sessionTtlMs: number;
  readonly label: string;
}

export interface IdentitySettings {
  readonly oidc: OidcSettings | null;
  readonly scim: { readonly enabled: boolean } | null;
  readonly roleMap: Readonly<Record<string, readonly Role[]>>;
}

export const DEFAULT_CLIENT_SECRET_ENV = 'COUNTERSIGN_OIDC_CLIENT_SECRET';

/** Parses and validates the identity file; throws VALIDATION_FAILED naming every wrong key. */
export function parseIdentityFile(text: string, source: string): IdentitySettings {
  const doc = parseDocument(text, { uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new CountersignError('VALIDATION_FAILED', `${source}: not valid YAML: ${doc.errors[0]!.message}`, { source });
  }
  const parsed = IdentityFile.safeParse(doc.toJS({ maxAliasCount: 0 }));
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    throw new CountersignError('VALIDATION_FAILED', `${source}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`, { source, issues });
  }
  const file = parsed.data;
  let oidc: OidcSettings | null = null;
  if (file.oidc) {
    const o = file.oidc;
    const ttl = parseDuration(o.sessionTtl);
    if (ttl === undefined || ttl < 60_000 || ttl > 7 * 86_400_000) {
      throw new CountersignError('VALIDATION_FAILED', `${source}: oidc.sessionTtl: a duration from 1m to 7d (got "${o.sessionTtl}")`, { source });
    }
    const issuer = new URL(o.issuer);
    const redirect = new URL(o.redirectUrl);
    for (const [key, url] of [['issuer', issuer], ['redirectUrl', redirect]] as const) {
      if (url.protocol === 'http:' && !isLoopback(url.hostname)) {
        throw new CountersignError('VALIDATION_FAILED', `${source}: oidc.${key}: https is required (http only on a loopback address)`, { source });
      }
      if (url.hash !== '' || url.username !== '' || url.password !== '') throw new CountersignError('VALIDATION_FAILED', `${source}: oidc.${key}: no fragment or credentials in the URL`, { source });
    }
    if (!o.scopes.includes('openid')) throw new CountersignError('VALIDATION_FAILED', `${source}: oidc.scopes must include openid`, { source });
    oidc = Object.freeze({
      issuer: o.issuer,
      clientId: o.clientId,
      clientSecretEnv: o.clientSecretEnv ?? DEFAULT_CLIENT_SECRET_ENV,
      tokenEndpointAuth: o.tokenEndpointAuth,
      redirectUrl: o.redirectUrl,
      scopes: Object.freeze([...new Set(o.scopes)]),
      groupsClaim: o.groupsClaim,
      emailClaim: o.emailClaim,
      allowedDomains: Object.freeze([...new Set(o.allowedDomains)]),
      requireVerifiedEmail: o.requireVerifiedEmail,
      sessionTtlMs: ttl,
      label: o.label,
    });
  }
  const roleMap: Record<string, readonly Role[]> = Object.create(null);
  for (const [group, roles] of Object.entries(file.roleMap)) roleMap[group] = Object.freeze([...new Set(roles)]);
  return Object.freeze({
    oidc,
    scim: file.scim ? Object.freeze({ enabled: file.scim.enabled }) : null,
    roleMap: Object.freeze(roleMap),
  });
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
