// Structured output end to end on the backend: the real app, the real ONNX session of the built-in model
// (random weights, Mistral v1 vocabulary), the real grammar check thread. Every answer that finishes with
// `stop` must decode (mistral-tokenizer-js, an independent v1 decoder) to JSON that ajv validates against the
// request's schema, streamed or not, at temperature 1 over several seeds, with different schemas in one batch.

import Ajv2020 from 'ajv/dist/2020';
import mistralTokenizer from 'mistral-tokenizer-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateResponse } from '../../../../shared/protocol';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../../model/checkpoint/default-model';
import { createBackendApp } from '../app';
import { GenerationClient } from '../generation-client';
import { readEvents } from '../test-support';
import { GrammarChecker } from './grammar-checker';
import { SAMPLE_SCHEMAS } from './sample-schemas';
import { TEST_TIME_LIMIT_MS } from './test-vocabularies';
import { onnxCacheDirFrom } from '../../config';

const SCHEMAS = SAMPLE_SCHEMAS;
const SEEDS = [1, 2, 3];
const MAX_TOKENS = 48;

const ajv = new Ajv2020({ strict: true });

function decode(tokenIds: number[]): string {
  return mistralTokenizer.decode(tokenIds, false, false);
}

let client: GenerationClient;
let checker: GrammarChecker;
let app: ReturnType<typeof createBackendApp>;
/** The same model with prompt-lookup drafts (speculative decoding, 4 per step). */
let speculativeClient: GenerationClient;
let speculativeApp: ReturnType<typeof createBackendApp>;

beforeAll(async () => {
  const modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
  client = GenerationClient.inProcess({
    engine: {
      kind: 'onnx',
      options: { modelDir, dtype: 'fp32', executionProvider: 'cpu', intraOpThreads: 1, maxSequences: 16, onnxCacheDir: onnxCacheDirFrom(process.env) },
    },
    limits: { prefixCacheSize: 0 },
  });
  checker = new GrammarChecker({ modelDir, timeLimitMs: TEST_TIME_LIMIT_MS });
  app = createBackendApp({ client, grammarChecker: checker });
  const options = {
    modelDir,
    dtype: 'fp32',
    executionProvider: 'cpu',
    intraOpThreads: 1,
    maxSequences: 16,
    onnxCacheDir: onnxCacheDirFrom(process.env),
  } as const;
  speculativeClient = GenerationClient.inProcess({
    engine: { kind: 'onnx', options: { ...options, speculativeTokens: 4 } },
    limits: { prefixCacheSize: 0, speculativeTokens: 4 },
  });
  speculativeApp = createBackendApp({ client: speculativeClient, grammarChecker: checker });
  await Promise.all([client.whenReady(), speculativeClient.whenReady()]);
});

afterAll(async () => {
  await checker?.close();
  await client?.close();
  await speculativeClient?.close();
});

const PROMPT = [1, 733, 16289, 28793, 22557, 28723, 733, 28748, 16289, 28793];

async function generate(name: string, seed: number, stream: boolean, on = app): Promise<{ name: string; ids: number[]; finish: string }> {
  const body = {
    requestId: `${name}-${seed}`,
    tokenIds: PROMPT,
    stream,
    sampling: { temperature: 1, seed, maxTokens: MAX_TOKENS },
    grammar: { type: 'json_schema', schema: SCHEMAS[name] },
  };
  const response = await on.request('/v1/generate', { method: 'POST', body: JSON.stringify(body) });
  expect(response.status).toBe(200);
  if (!stream) {
    const [choice] = ((await response.json()) as GenerateResponse).choices;
    return { name, ids: choice.tokenIds, finish: choice.finishReason };
  }
  const events = await readEvents(response);
  const finish = events.find((event) => event.event === 'finish');
  return {
    name,
    ids: events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : [])),
    finish: finish?.event === 'finish' ? finish.data.finishReason : 'none',
  };
}

describe('json_schema on the built-in model', () => {
  it('every answer that stops is valid JSON for its schema (9 schemas x 3 seeds, streamed and not, sharing batches)', async () => {
    const runs = Object.keys(SCHEMAS).flatMap((name) => SEEDS.map((seed, index) => generate(name, seed, index % 2 === 0)));
    const results = await Promise.all(runs);
    let stopped = 0;
    for (const { name, ids, finish } of results) {
      if (finish !== 'stop') {
        expect(finish).toBe('length');
        continue;
      }
      stopped++;
      const text = decode(ids);
      let value: unknown;
      expect(() => (value = JSON.parse(text)), `${name}: ${text}`).not.toThrow();
      const validate = ajv.compile(SCHEMAS[name]);
      expect(validate(value), `${name}: ${text} ${JSON.stringify(validate.errors)}`).toBe(true);
    }
    // Most answers must finish, or the check above proves little.
    expect(stopped).toBeGreaterThanOrEqual(results.length * 0.6);
  });

  it('the same seed gives the same ids streamed and not, and json_object gives an object', async () => {
    const [a, b] = await Promise.all([generate('strings', 11, true), generate('strings', 11, false)]);
    expect(a.ids).toEqual(b.ids);
    const body = { requestId: 'obj', tokenIds: PROMPT, stream: false, sampling: { temperature: 1, seed: 5, maxTokens: 64 }, grammar: { type: 'json_object' } };
    const response = await app.request('/v1/generate', { method: 'POST', body: JSON.stringify(body) });
    const [choice] = ((await response.json()) as GenerateResponse).choices;
    if (choice.finishReason === 'stop') expect(typeof JSON.parse(decode(choice.tokenIds))).toBe('object');
    expect(decode(choice.tokenIds).startsWith('{')).toBe(true);
  });
});

describe('json_schema with speculative decoding', () => {
  it('drafts verified under the grammar change no id: the same ids and finish reasons as without, for each seed', async () => {
    const names = Object.keys(SCHEMAS).slice(0, 4);
    const runs = (on: typeof app) => Promise.all(names.flatMap((name) => SEEDS.slice(0, 2).map((seed) => generate(name, seed, seed % 2 === 0, on))));
    const [plain, speculative] = [await runs(app), await runs(speculativeApp)];
    expect(speculative).toEqual(plain);
    const metrics = speculativeClient.metrics.render();
    expect(Number(/backend_speculative_drafted_tokens_total (\d+)/.exec(metrics)![1])).toBeGreaterThan(0);
  });
});

describe('logprobs under a grammar', () => {
  it('report the masked distribution: every alternative is an id the grammar allows', async () => {
    const body = {
      requestId: 'lp',
      tokenIds: PROMPT,
      stream: false,
      sampling: { temperature: 1, seed: 4, maxTokens: 12, logprobs: 5 },
      grammar: { type: 'json_schema', schema: SAMPLE_SCHEMAS.enumConst },
    };
    const response = await app.request('/v1/generate', { method: 'POST', body: JSON.stringify(body) });
    const [choice] = ((await response.json()) as GenerateResponse).choices;
    const first = choice.logprobs![0];
    expect(first.top.length).toBeGreaterThan(0);
    // The output must open with {"color": ...: every alternative of the first token is a head of that.
    for (const alternative of first.top)
      expect('{"color": '.startsWith(decode([alternative.tokenId])) || decode([alternative.tokenId]).startsWith('{"color": ')).toBe(true);
    const mass = first.top.reduce((sum, alternative) => sum + Math.exp(alternative.logprob), 0);
    expect(mass).toBeLessThanOrEqual(1 + 1e-6);
    expect(mass).toBeGreaterThan(0.5); // the few allowed ids carry the whole distribution
    expect(choice.logprobs!.every((entry) => Number.isFinite(entry.logprob))).toBe(true);
  });
});
