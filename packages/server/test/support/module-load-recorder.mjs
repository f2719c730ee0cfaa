// `node --import <this file>` (or NODE_OPTIONS=--import=<its URL>) with MODULE_LOAD_RECORD
// naming a file: records every module the process loads there, one URL a line. ES modules through
// a load hook (registered after any earlier --import, so it sees each URL first, tsx's .ts files
// included), CommonJS modules from the require cache when the process exits. Used by
// module-loads.ts to check what the CLI loads at start-up.
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';

const out = process.env.MODULE_LOAD_RECORD;
if (out) {
  register(new URL('./module-load-hooks.mjs', import.meta.url), { data: { out } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    const files = Object.keys(cache).map((file) => pathToFileURL(file).href);
    if (files.length > 0) appendFileSync(out, `${files.join('\n')}\n`);
  });
}
