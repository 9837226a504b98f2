// Mistral v3 tool calls on the backend. 'required' on a random v3-shaped checkpoint (vocab 32768, the real v3
// tokenizer.model beside it) through the real app and ONNX session: [TOOL_CALLS], then a call whose arguments
// ajv validates against the tool's parameters. 'auto' on a fake model that emits [TOOL_CALLS] at a chosen
// step: free text before it (the same ids as without a grammar), a valid call after it.

import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Ajv2020 from 'ajv/dist/2020';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_MODEL_CONFIG, writeRandomModel } from '../../model/checkpoint/default-model';
import type { EngineLoadOptions } from '../../model/runtime/engine';
import type { StepItem } from '../../model/runtime/engine-types';
import { createBackendApp } from '../app';
import { FakeEngine } from '../fake-engine';
import { GenerationClient } from '../generation-client';
import type { GenerateResponse } from '../../../../shared/protocol';
import { GrammarChecker } from './grammar-checker';
import { decodeIds, fixtureVocabulary, V3_MODEL_FILE, TEST_TIME_LIMIT_MS } from './test-vocabularies';

const V3_CONFIG = {
  ...DEFAULT_MODEL_CONFIG,
  vocab_size: 32768,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  sliding_window: null,
};
const TOOL_CALLS = 5; // asserted below against the tokenizer's piece; the backend finds it by that piece
const TOOLS = [
  {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
    },
  },
  {
    name: 'add',
    parameters: {
      type: 'object',
      properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } },
      required: ['a', 'b'],
    },
  },
];
const PROMPT = [1, 3, 1500, 2200, 4];
const ajv = new Ajv2020({ strict: true });

/** The ids after [TOOL_CALLS] as text, parsed and checked against the tools; throws with the text on failure. */
function checkCalls(tokenIds: number[]): { name: string; arguments: unknown }[] {
  const text = decodeIds(tokenIds, 'v3');
  expect(text.startsWith(' [')).toBe(true);
  const calls = JSON.parse(text) as { name: string; arguments: unknown }[];
  expect(calls).toHaveLength(1);
  for (const call of calls) {
    expect(Object.keys(call)).toEqual(['name', 'arguments']);
    const tool = TOOLS.find((candidate) => candidate.name === call.name);
    expect(tool, text).toBeDefined();
    const validate = ajv.compile(tool!.parameters);
    expect(validate(call.arguments), `${text} ${JSON.stringify(validate.errors)}`).toBe(true);
  }
  return calls;
}

/** In memory: a temp folder's graph has no business in the ONNX cache. */
const ONNX_OPTIONS = (modelDir: string): EngineLoadOptions => ({
  modelDir,
  dtype: 'fp32',
  executionProvider: 'cpu',
  intraOpThreads: 1,
  maxSequences: 8,
  onnxCacheDir: null,
});

let folder: string;
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'v3-tools-'));
  await writeRandomModel(folder, V3_CONFIG, 99);
  await copyFile(V3_MODEL_FILE, join(folder, 'tokenizer.model'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});

async function serve(engine?: FakeEngine) {
  const client = engine
    ? GenerationClient.inProcess({ engine: { kind: 'fake', options: {} }, vocabularyDir: folder, limits: { prefixCacheSize: 0 } }, engine)
    : GenerationClient.inProcess({ engine: { kind: 'onnx', options: ONNX_OPTIONS(folder) }, limits: { prefixCacheSize: 0 } });
  const checker = new GrammarChecker({ modelDir: folder, timeLimitMs: TEST_TIME_LIMIT_MS });
  await client.whenReady();
  const app = createBackendApp({ client, grammarChecker: checker });
  const generate = async (body: Record<string, unknown>) => {
    const response = await app.request('/v1/generate', { method: 'POST', body: JSON.stringify({ requestId: 't', tokenIds: PROMPT, stream: false, ...body }) });
    expect(response.status).toBe(200);
    return (await response.json()) as GenerateResponse;
  };
  return { generate, close: async () => (await checker.close(), await client.close()) };
}

describe("tool calls 'required' on a random v3 checkpoint", () => {
  it('every choice starts with [TOOL_CALLS]; those that stop hold one valid call (3 seeds x n = 3)', async () => {
    const { generate, close } = await serve();
    try {
      expect(fixtureVocabulary('v3').toolCallsTokenId).toBe(TOOL_CALLS);
      let stopped = 0;
      for (const seed of [1, 2, 3]) {
        const grammar = { type: 'tool_calls', mode: 'required', tools: TOOLS, parallel: false };
        const { choices } = await generate({ sampling: { temperature: 1, seed, n: 3, maxTokens: 60 }, grammar });
        for (const choice of choices) {
          expect(choice.tokenIds[0]).toBe(TOOL_CALLS);
          if (choice.finishReason !== 'stop') continue;
          stopped++;
          checkCalls(choice.tokenIds.slice(1));
        }
        expect(new Set(choices.map((choice) => JSON.stringify(choice.tokenIds))).size).toBeGreaterThan(1); // own matchers, own draws
      }
      expect(stopped).toBeGreaterThanOrEqual(6);
    } finally {
      await close();
    }
  });
});

/** The fake model, except that at output position `at` of every sequence [TOOL_CALLS] wins by far. */
class TriggerEngine extends FakeEngine {
  constructor(private readonly at: number) {
    super({ vocabSize: 32768, maxSequences: 8 });
  }

  override async step(items: StepItem[]): Promise<Float32Array[]> {
    const rows = await super.step(items);
    items.forEach((item, index) => {
      if (this.sequenceLength(item.sequenceId) === PROMPT.length + this.at) rows[index][TOOL_CALLS] = 1e4;
    });
    return rows;
  }
}

describe("tool calls 'auto' with a model that emits [TOOL_CALLS] at step 6", () => {
  it('free text before the trigger (same ids as unconstrained), a valid call after it', async () => {
    const { generate, close } = await serve(new TriggerEngine(6));
    try {
      const sampling = { temperature: 1, seed: 8, maxTokens: 80 };
      const free = await generate({ sampling });
      const grammar = { type: 'tool_calls', mode: 'auto', tools: TOOLS, parallel: false };
      const { choices } = await generate({ sampling, grammar });
      const [choice] = choices;
      expect(choice.tokenIds.slice(0, 6)).toEqual(free.choices[0].tokenIds.slice(0, 6));
      expect(choice.tokenIds.slice(0, 6)).not.toContain(TOOL_CALLS);
      expect(choice.tokenIds[6]).toBe(TOOL_CALLS);
      expect(choice.finishReason).toBe('stop');
      checkCalls(choice.tokenIds.slice(7));
    } finally {
      await close();
    }
  });
});
