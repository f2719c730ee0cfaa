/** Pieces every client command shares: the --url/--token/--json options, output, parsers. */
import { InvalidArgumentError, type Command } from 'commander';
import { ApiClient } from './http-client.ts';
import { safeJson } from './format.ts';

export interface CommonFlags {
  url?: string;
  token?: string;
  json?: boolean;
}

/** Adds --url, --token and --json to a command that talks to a server. */
export function withClientOptions(command: Command): Command {
  return command
    .option('--url <url>', 'server URL (env COUNTERSIGN_URL; default http://127.0.0.1:8080)')
    .option('--token <token>', 'operator token (env COUNTERSIGN_TOKEN; prefer the variable: flags show in the process list)')
    .option('--json', 'print JSON instead of text');
}

export function clientFrom(flags: CommonFlags): ApiClient {
  return new ApiClient({ url: flags.url, token: flags.token });
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** JSON output; C1, bidi and invisible characters are escaped, so it is safe in a terminal too. */
export function printJson(value: unknown): void {
  print(safeJson(value));
}

/** A commander parser for a whole number in [1, max]. */
export function positiveInt(max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`expected a whole number from 1 to ${max}.`);
    }
    return n;
  };
}

/** A commander parser for a repeatable option: `--role a --role b` gives ['a', 'b']. */
export function collect(allowed?: readonly string[]): (value: string, previous: string[] | undefined) => string[] {
  return (value, previous) => {
    if (allowed && !allowed.includes(value)) {
      throw new InvalidArgumentError(`allowed: ${allowed.join(', ')}.`);
    }
    return [...(previous ?? []), value];
  };
}
