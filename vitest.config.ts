import os from 'node:os';
import { defineConfig } from 'vitest/config';
import { FIXTURES_DIR, missingFixturesMessage } from './scripts/fixtures-dir.ts';

// Fail fast, in one line, when ../shared/fixtures (or FIXTURES_DIR) is missing: every fixture test would fail on its own.
const missingFixtures = missingFixturesMessage();
if (missingFixtures) {
  console.error(missingFixtures);
  process.exit(1);
}

// Two projects: Node (shared/, gpu-backend/, end-to-end tests in test/) and the Workers runtime (edge/).
export default defineConfig({
  test: {
    // Vitest's default is one worker fewer than the CPUs: one on a 2-CPU machine, where the end-to-end
    // files then wait on their child processes one after another. Two overlap those waits (the grammar
    // check's limit is on CPU time, so a loaded machine no longer turns a compile into a 413).
    maxWorkers: Math.max(2, os.availableParallelism() - 1),
    projects: [
      {
        test: {
          name: 'node',
          environment: 'node',
          include: ['shared/**/*.test.ts', 'gpu-backend/**/*.test.ts', 'test/**/*.test.ts'],
          env: { FIXTURES_DIR },
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      './edge/vitest.config.ts',
    ],
  },
});
