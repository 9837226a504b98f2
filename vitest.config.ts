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
