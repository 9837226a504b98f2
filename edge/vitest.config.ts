import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineProject } from 'vitest/config';

// Edge tests run inside workerd with the bindings declared in wrangler.toml.
export default defineProject({
  plugins: [
    cloudflareTest({
      main: './src/index.ts',
      wrangler: { configPath: '../wrangler.toml' },
      miniflare: {
        bindings: { BACKEND_URLS: 'http://127.0.0.1:9', BACKEND_TOKEN: 'test-backend-token', DEV_API_KEY: '' },
      },
    }),
  ],
  test: {
    name: 'edge',
    include: ['src/**/*.test.ts', '../shared/**/*.workers.test.ts'],
  },
});
