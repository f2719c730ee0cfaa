// The screening worker's entry when the server runs from the clone's TypeScript sources: the
// clone's dev loader (tsx, and @countersign packages resolved to their sources, as the bins do),
// then screen-worker.ts. A built server starts dist/engine/screen-worker.js instead (screener.ts).
await import('../../../../tools/dev/register.mjs');
await import('./screen-worker.ts');
