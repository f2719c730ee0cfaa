/**
 * Runs in every test worker before its test file: tests see nothing of the developer's own
 * set-up. Every COUNTERSIGN_* variable is removed (except the test run's own knobs below), and
 * the worker moves to an empty temporary directory, so a `countersign.yaml`, database or audit
 * key in the clone (as the README's Policy section suggests creating) is never picked up by a
 * server, CLI or engine that a test starts with default paths.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Knobs of the test run itself, documented where they are read. */
const TEST_KNOBS = new Set(['COUNTERSIGN_TEST_PG_URL', 'COUNTERSIGN_CHROMIUM', 'COUNTERSIGN_UPDATE_SCREENSHOTS', 'COUNTERSIGN_CHECK_REENTRY']);

for (const name of Object.keys(process.env)) {
  if (name.startsWith('COUNTERSIGN_') && !TEST_KNOBS.has(name)) delete process.env[name];
}
process.chdir(mkdtempSync(join(tmpdir(), 'countersign-test-cwd-')));

// Processes a test starts (`node --import tsx script.ts`) resolve the @countersign packages to
// their sources too, like the tests themselves (vitest.config.ts); the dist/ build is for
// consumers and may be absent or stale in a clone. The packed-install test clears this.
const SOURCE_CONDITION = '--conditions=countersign-source';
if (!(process.env.NODE_OPTIONS ?? '').includes(SOURCE_CONDITION)) process.env.NODE_OPTIONS = `${process.env.NODE_OPTIONS ?? ''} ${SOURCE_CONDITION}`.trim();
