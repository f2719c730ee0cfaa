import { defaultClientConditions, defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Tests run the sources, never a build: each package.json lists `countersign-source` first in
// its exports (./src/*.ts), before the dist/ entries that consumers of the packages get.
const SOURCE = 'countersign-source';

export default defineConfig({
  resolve: { conditions: [SOURCE, ...defaultClientConditions] },
  ssr: { resolve: { conditions: [SOURCE, ...defaultServerConditions], externalConditions: [SOURCE] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'clients/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    // The developer's environment and working directory never reach a test (test/setup.ts).
    setupFiles: ['./test/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test files start real servers and databases; two cores, so keep parallelism modest.
    maxWorkers: 2,
  },
});
