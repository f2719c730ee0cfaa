// The screening worker's entry: registers tsx (the sources are TypeScript, as in bin/countersign.js), then runs screen-worker.ts.
import { register } from 'tsx/esm/api';

register();
await import('./screen-worker.ts');
