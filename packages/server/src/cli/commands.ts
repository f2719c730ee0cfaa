import type { Command } from 'commander';

/** status, approve, reject, history, config, operators, keys: written against the HTTP API. */
export function registerClientCommands(_program: Command): void {}
