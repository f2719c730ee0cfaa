/**
 * The cheap end of the config pipeline (config.ts re-exports all of it): the process
 * environment, read in this one place, and the client commands' settings. Kept apart from
 * config.ts, which resolves the server's settings with the domain's defaults, so that the CLI's
 * start-up path loads no domain module (docs/ARCHITECTURE.md, CLI cold start).
 */

export type Environment = Readonly<Record<string, string | undefined>>;

/** The process environment, as a frozen copy: the one place the server reads `process.env`. */
export function processEnvironment(): Environment {
  return Object.freeze({ ...process.env });
}

export interface ClientConfig {
  readonly url: string;
  readonly token: string | undefined;
}

export function resolveClientConfig(flags: { url?: string | undefined; token?: string | undefined } = {}, env: Environment = processEnvironment()): ClientConfig {
  return Object.freeze({
    url: (flags.url ?? env.COUNTERSIGN_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, ''),
    token: flags.token ?? env.COUNTERSIGN_TOKEN ?? undefined,
  });
}
