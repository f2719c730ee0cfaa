/**
 * Identity providers for the single sign-on tests (issue 20).
 *
 * - `startRealProvider`: a real OpenID Connect provider (the `oidc-provider` package, the
 *   certified Node implementation) on a loopback port, with its development login and consent
 *   pages, PKCE required, and the test's accounts (email, groups) as claims in the ID token.
 * - `startCraftedIssuer`: a hostile or broken issuer written here from the OpenID Connect wire
 *   format (discovery, JWKS, token endpoint): it signs whatever ID token the test asks for (another
 *   audience, expired, another nonce, `alg: none`, another key…), so the relying party's checks can
 *   be shown to refuse each one. It also records what the relying party sent (PKCE verifier).
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import Provider from 'oidc-provider';

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, 'close');
  return port;
}

export interface Account {
  email: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

export interface RealProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** Accounts by login name (the development login page accepts any password); change them between sign-ins. */
  accounts: Map<string, Account>;
  close(): Promise<void>;
}

export async function startRealProvider(redirectUri: string, accounts: Record<string, Account>): Promise<RealProvider> {
  let handler: ((req: IncomingMessage, res: import('node:http').ServerResponse) => void) | undefined;
  const server: Server = createServer((req, res) => handler!(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const table = new Map(Object.entries(accounts));
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const provider = new Provider(issuer, {
    clients: [{ client_id: 'countersign', client_secret: clientSecret, redirect_uris: [redirectUri], response_types: ['code'], grant_types: ['authorization_code'], token_endpoint_auth_method: 'client_secret_basic' }],
    jwks: { keys: [{ ...(await exportJWK(privateKey)), kid: 'test-rs256', use: 'sig', alg: 'RS256' }] },
    pkce: { required: () => true },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
    scopes: ['openid', 'email', 'profile', 'groups'],
    // The claims of the granted scopes go into the ID token itself (what Countersign reads).
    conformIdTokenClaims: false,
    cookies: { keys: [randomBytes(16).toString('hex')] },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, sub) {
      const account = table.get(sub);
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const now = table.get(sub) ?? account;
          return { sub, email: now.email, email_verified: now.email_verified ?? true, ...(now.name ? { name: now.name } : {}), ...(now.groups ? { groups: now.groups } : {}) };
        },
      };
    },
  });
  // The development pages warn on every start; keep the test output readable.
  provider.on('server_error', (_ctx, err) => console.error('oidc-provider server_error', err));
  handler = provider.callback();
  return {
    issuer,
    clientId: 'countersign',
    clientSecret,
    accounts: table,
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

export type CraftMode =
  | 'good'
  | 'wrong_audience'
  | 'expired'
  | 'wrong_nonce'
  | 'wrong_issuer'
  | 'alg_none'
  | 'hs256_with_secret'
  | 'other_key'
  | 'bad_domain'
  | 'unmapped_group'
  | 'multi_audience_no_azp';

export interface CraftedIssuer {
  issuer: string;
  clientSecret: string;
  /** What the next token response signs. */
  mode: CraftMode;
  /** Claims that replace the mode's for the next token (`groups: undefined` sends no groups claim). */
  identity: { sub: string; email: string; groups?: string[] | undefined } | null;
  /** `code_challenge_methods_supported` in discovery (default S256). */
  pkceMethods: string[];
  /** Every token request received: its form, and whether its PKCE verifier matched the challenge sent to /authorize. */
  tokenRequests: Array<{ form: Record<string, string>; authorization: string | undefined }>;
  /** Reads the authorization URL the relying party built (the test's "browser" follows it here). */
  authorize(url: string): { code: string; state: string; nonce: string; challenge: string; method: string };
  close(): Promise<void>;
}

/** A hostile issuer: discovery, JWKS and a token endpoint that signs what the test asks for. */
export async function startCraftedIssuer(clientId: string): Promise<CraftedIssuer> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const other = await generateKeyPair('RS256', { extractable: true });
  const jwk: JWK = { ...(await exportJWK(publicKey)), kid: 'k1', use: 'sig', alg: 'RS256' };
  const clientSecret = randomBytes(24).toString('base64url');
  const codes = new Map<string, { nonce: string; challenge: string }>();
  let base = '';
  const state: CraftedIssuer = {
    issuer: '',
    clientSecret,
    mode: 'good',
    pkceMethods: ['S256'],
    identity: null,
    tokenRequests: [],
    authorize(url: string) {
      const u = new URL(url);
      const code = randomBytes(16).toString('hex');
      const nonce = u.searchParams.get('nonce') ?? '';
      const challenge = u.searchParams.get('code_challenge') ?? '';
      codes.set(code, { nonce, challenge });
      return { code, state: u.searchParams.get('state') ?? '', nonce, challenge, method: u.searchParams.get('code_challenge_method') ?? '' };
    },
    async close() {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
  const sign = async (claims: Record<string, unknown>, mode: CraftMode): Promise<string> => {
    if (mode === 'alg_none') {
      const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
    }
    if (mode === 'hs256_with_secret') return new SignJWT(claims).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).sign(new TextEncoder().encode(clientSecret));
    return new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).sign(mode === 'other_key' ? other.privateKey : privateKey);
  };
  const server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', base);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (url.pathname === '/.well-known/openid-configuration') {
      return send(200, { issuer: base, authorization_endpoint: `${base}/authorize`, token_endpoint: `${base}/token`, jwks_uri: `${base}/jwks`, code_challenge_methods_supported: state.pkceMethods, id_token_signing_alg_values_supported: ['RS256'] });
    }
    if (url.pathname === '/jwks') return send(200, { keys: [jwk] });
    if (url.pathname === '/token' && req.method === 'POST') {
      let text = '';
      for await (const chunk of req) text += chunk;
      const form = Object.fromEntries(new URLSearchParams(text));
      state.tokenRequests.push({ form, authorization: req.headers.authorization });
      const issued = codes.get(form.code ?? '');
      if (!issued) return send(400, { error: 'invalid_grant' });
      codes.delete(form.code!);
      // PKCE as a provider checks it (RFC 7636 §4.6): no verifier, or one that does not hash to the challenge, is refused.
      const verifier = form.code_verifier ?? '';
      if (verifier === '' || createHash('sha256').update(verifier).digest('base64url') !== issued.challenge) return send(400, { error: 'invalid_grant', error_description: 'PKCE verification failed' });
      const now = Math.floor(Date.now() / 1000);
      const mode = state.mode;
      const claims: Record<string, unknown> = {
        iss: mode === 'wrong_issuer' ? 'https://evil.example' : base,
        aud: mode === 'wrong_audience' ? 'someone-else' : mode === 'multi_audience_no_azp' ? [clientId, 'someone-else'] : clientId,
        // One person per mode (a refusal for one never meets another's operator).
        sub: `crafted-${mode}`,
        iat: mode === 'expired' ? now - 7200 : now,
        exp: mode === 'expired' ? now - 3600 : now + 300,
        nonce: mode === 'wrong_nonce' ? 'not-the-nonce' : issued.nonce,
        email: mode === 'bad_domain' ? 'eve@evil.test' : `${mode.replace(/_/g, '-')}@example.com`,
        email_verified: true,
        groups: mode === 'unmapped_group' ? ['interns', 'nobody-maps-this'] : ['sec-leads'],
      };
      if (state.identity) {
        claims.sub = state.identity.sub;
        claims.email = state.identity.email;
        if (state.identity.groups === undefined) delete claims.groups;
        else claims.groups = state.identity.groups;
      }
      return send(200, { access_token: 'at', token_type: 'Bearer', expires_in: 300, id_token: await sign(claims, mode) });
    }
    send(404, { error: 'not_found' });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.issuer = base;
  return state;
}

/** Writes a COUNTERSIGN_IDENTITY_FILE for `issuer` and returns its path. */
export function identityFile(input: { issuer: string; redirectUrl: string; scopes?: string[]; extra?: string }): string {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-identity-'));
  const path = join(dir, 'identity.yaml');
  writeFileSync(
    path,
    `oidc:
  issuer: ${input.issuer}
  clientId: countersign
  redirectUrl: ${input.redirectUrl}
  scopes: [${(input.scopes ?? ['openid', 'email', 'profile', 'groups']).join(', ')}]
  allowedDomains: [example.com]
  label: Sign in with Example SSO
scim:
  enabled: true
roleMap:
  sec-leads: [lead, reviewer]
  soc: [reviewer]
  interns: []
${input.extra ?? ''}`,
  );
  return path;
}
