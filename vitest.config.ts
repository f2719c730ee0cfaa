import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/test/**/*.test.ts', 'clients/*/test/**/*.test.ts'],
    // The developer's environment and working directory never reach a test (test/setup.ts).
    setupFiles: ['./test/setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Test files start real servers and databases; two cores, so keep parallelism modest.
    maxWorkers: 2,
  },
});
