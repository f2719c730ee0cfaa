/**
 * Runs the repository's TypeScript sources without a build: registers tsx, and resolves every
 * @countersign package to its sources (the `countersign-source` export condition that each
 * package.json lists first) instead of its dist/ build. The bins load it when they find src/
 * next to them (a clone); scripts use it as `node --import ./tools/dev/register.mjs file.ts`.
 * Published packages never load it: they hold dist/ only.
 */
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

export const SOURCE_CONDITION = 'countersign-source';

registerTsx();
// Registered after tsx, so it runs first and hands tsx (and Node's resolver) the extra condition.
register(new URL('./source-condition.mjs', import.meta.url));
