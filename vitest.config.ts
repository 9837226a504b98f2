import { defineConfig } from 'vitest/config';

// Two projects: Node (shared/, gpu-backend/, end-to-end tests in test/) and the Workers runtime (edge/).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          environment: 'node',
          include: ['shared/**/*.test.ts', 'gpu-backend/**/*.test.ts', 'test/**/*.test.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      './edge/vitest.config.ts',
    ],
  },
});
