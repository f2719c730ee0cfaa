// The retrain worker's entry when the server runs from the clone's TypeScript sources: the
// clone's dev loader, then retrain-worker.ts (as screen-worker.mjs does for screening).
await import('../../../../tools/dev/register.mjs');
await import('./retrain-worker.ts');
