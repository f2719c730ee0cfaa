/**
 * Embedded mode: the engine in the agent's own process, behind the same `AgentGateway`. The
 * server package is loaded at runtime, so the client has no dependency on it (nor on its native
 * database driver) unless embedded mode is used.
 */
import { CountersignError } from '@countersign/core';
import type { EmbeddedGateway, EmbeddedOptions } from './types.ts';

/** Kept in a variable so neither TypeScript nor a bundler treats it as a static dependency. */
const SERVER_PACKAGE = '@countersign/server';

interface ServerModule {
  createEmbeddedGateway(options: EmbeddedOptions): Promise<EmbeddedGateway>;
}

export async function loadEmbeddedGateway(options: EmbeddedOptions = {}): Promise<EmbeddedGateway> {
  let mod: Partial<ServerModule>;
  try {
    mod = (await import(/* @vite-ignore */ SERVER_PACKAGE)) as Partial<ServerModule>;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    const message = err instanceof Error ? err.message : String(err);
    if ((code === 'ERR_MODULE_NOT_FOUND' || /cannot find (module|package)/i.test(message)) && message.includes(SERVER_PACKAGE)) {
      throw new CountersignError(
        'NOT_IMPLEMENTED',
        `embedded mode needs the ${SERVER_PACKAGE} package: run "npm install ${SERVER_PACKAGE}" (or connect to a server with { url, apiKey })`,
        { package: SERVER_PACKAGE },
      );
    }
    throw new CountersignError('INTERNAL', `could not load ${SERVER_PACKAGE}: ${message}`, { package: SERVER_PACKAGE });
  }
  if (typeof mod.createEmbeddedGateway !== 'function') {
    throw new CountersignError('NOT_IMPLEMENTED', `this version of ${SERVER_PACKAGE} has no createEmbeddedGateway(); upgrade it`, {
      package: SERVER_PACKAGE,
    });
  }
  return mod.createEmbeddedGateway(options);
}

export type { EmbeddedGateway, EmbeddedOptions } from './types.ts';
