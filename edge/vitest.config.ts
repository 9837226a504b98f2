import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { readdirSync, readFileSync } from 'node:fs';
import { defineProject } from 'vitest/config';
import { FIXTURES_DIR as FIXTURES } from '../scripts/fixtures-dir.ts';

const TOOL_SAMPLES = `${FIXTURES}/tokenizer/tool-samples`;

/** mistral-common's tool samples, read where they lie: { name: { sample, tokens } } as one text binding. */
function toolSamples(): string {
  const read = (name: string, file: string) => JSON.parse(readFileSync(`${TOOL_SAMPLES}/${name}/${file}`, 'utf8')) as unknown;
  const names = readdirSync(TOOL_SAMPLES).sort();
  return JSON.stringify(Object.fromEntries(names.map((name) => [name, { sample: read(name, 'sample.json'), tokens: read(name, 'tokens_v3.json') }])));
}

// Edge tests run inside workerd with the bindings declared in wrangler.toml.
export default defineProject({
  plugins: [
    cloudflareTest({
      main: './src/index.ts',
      wrangler: { configPath: '../wrangler.toml' },
      miniflare: {
        bindings: { BACKEND_URLS: 'http://127.0.0.1:9', BACKEND_TOKEN: 'test-backend-token', DEV_API_KEY: '', FIXTURE_TOOL_SAMPLES: toolSamples() },
        // Test-only fixtures from ../shared (workerd has no file system): SentencePiece models and vectors.
        dataBlobBindings: {
          FIXTURE_TOKENIZER_V1: `${FIXTURES}/tokenizer/tokenizer.model.v1`,
          FIXTURE_TOKENIZER_V3: `${FIXTURES}/tokenizer/mistral_instruct_tokenizer_240323.model.v3`,
        },
        textBlobBindings: {
          FIXTURE_PUBLISHED_VECTORS: `${FIXTURES}/tokenizer/published-vectors.json`,
        },
      },
    }),
  ],
  test: {
    name: 'edge',
    include: ['src/**/*.test.ts', '../shared/**/*.workers.test.ts'],
  },
});
