/**
 * Where the key that checks decision receipts comes from. A receipt only proves something if
 * the key that checks it did not come from whoever might forge it: a proxy on the path that
 * answers `GET /v1/audit/public-key` with its own key can sign any approval it likes. So the
 * key is pinned by the user when possible (`auditPublicKey` / `COUNTERSIGN_AUDIT_PUBLIC_KEY`):
 *
 * - PEM text (`-----BEGIN PUBLIC KEY-----…`): used as is, nothing is fetched;
 * - a key id (16 hex digits, as `countersign audit` and the server log print it): the key is
 *   fetched from the server, and refused unless its id is the pinned one;
 * - anything else is a path to a PEM file, read once.
 *
 * With no pin, the client trusts the key the server serves on first use (TOFU), says so once,
 * and keeps that key for its whole life: a different key later is refused, never adopted.
 */
import { CountersignError } from '@countersign/core';

export type KeyPin = { kind: 'pem'; pem: string } | { kind: 'keyId'; keyId: string } | { kind: 'path'; path: string };

const KEY_ID = /^[0-9a-f]{16}$/i;

/** What a pin value means (see the module comment); an empty value is no pin. */
export function parseKeyPin(value: string | undefined): KeyPin | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (text.includes('-----BEGIN')) return { kind: 'pem', pem: text };
  if (KEY_ID.test(text)) return { kind: 'keyId', keyId: text.toLowerCase() };
  return { kind: 'path', path: text };
}

/** Reads a pinned PEM file. node:fs is loaded only here, so the SDK stays portable without a path pin. */
export async function readPemFile(path: string): Promise<string> {
  let text: string;
  try {
    const fs = (await import(/* @vite-ignore */ 'node:fs/promises')) as { readFile(path: string, encoding: 'utf8'): Promise<string> };
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    throw new CountersignError(
      'VALIDATION_FAILED',
      `the pinned audit public key "${path}" is neither PEM text, a 16-hex-digit key id, nor a readable file: ${(err as Error).message}`,
      { path },
    );
  }
  if (!text.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new CountersignError('VALIDATION_FAILED', `the pinned audit public key file "${path}" holds no PEM "PUBLIC KEY"`, { path });
  }
  return text;
}

/**
 * True when `url` may serve a key that is trusted on first use: TLS, or this machine (a proxy
 * there is already inside the agent's trust boundary). Plain http to anywhere else is refused.
 */
export function isTrustedKeyTransport(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol === 'https:') return true;
  if (parsed.protocol !== 'http:') return false;
  return isLoopbackHost(parsed.hostname);
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, '');
  // Only `localhost` itself (the hosts file): `*.localhost` is loopback by RFC 6761, but glibc's
  // resolver asks DNS for it, so `evil.localhost` can be any address.
  if (host === 'localhost') return true;
  if (host === '::1' || host === '0:0:0:0:0:0:0:1') return true;
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  const parts = v4.split('.');
  return parts.length === 4 && parts[0] === '127' && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}
