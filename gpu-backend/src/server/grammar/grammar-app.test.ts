// Bad grammars through the real app and check thread: each a 400 naming `grammar` and the problem, or a 413
// when too large or too slow to compile, answered before any stream starts; other requests keep flowing.

import { rm } from 'node:fs/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ErrorBody, GenerateResponse } from '../../../../shared/protocol';
import { createBackendApp } from '../app';
import { FakeEngine } from '../fake-engine';
import { GenerationClient } from '../generation-client';
import { GrammarChecker } from './grammar-checker';
import { TEST_TIME_LIMIT_MS, vocabularyFolder } from './test-vocabularies';

let folder: string;
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  folder = await vocabularyFolder('grammar-app');
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
});
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

async function setup(checker: GrammarChecker | null = new GrammarChecker({ modelDir: folder, timeLimitMs: TEST_TIME_LIMIT_MS })) {
  const client = GenerationClient.inProcess(
    { engine: { kind: 'fake', options: {} }, vocabularyDir: folder, limits: { prefixCacheSize: 0 } },
    new FakeEngine({ vocabSize: 32000 }),
  );
  closers.push(async () => (await checker?.close(), await client.close()));
  await client.whenReady();
  const app = createBackendApp({ client, grammarChecker: checker ?? undefined });
  return (grammar: unknown, extra: Record<string, unknown> = {}) =>
    app.request('/v1/generate', {
      method: 'POST',
      body: JSON.stringify({ requestId: 'g', tokenIds: [1, 100, 200], sampling: { maxTokens: 8, seed: 1 }, grammar, ...extra }),
    });
}

async function refusal(response: Response, status: number): Promise<ErrorBody['error']> {
  expect(response.status).toBe(status);
  const { error } = (await response.json()) as ErrorBody;
  expect(error.code).toBe('invalid_request');
  expect(error.param).toBe('grammar');
  return error;
}

const schema = (value: Record<string, unknown>) => ({ type: 'json_schema', schema: value });

describe('grammar errors', () => {
  it.each([
    [{ type: 'xml' }, 'grammar.type'],
    [schema({ type: 'object', properties: 5 }), '/properties: properties must be an object of schemas'],
    [schema({ type: 'object', title: 5 }), 'not a valid JSON Schema: /title must be string'],
    [schema({ type: 'objec' }), '/type: unknown type "objec"'],
    [schema({ type: 'array', items: { type: 'integer' }, uniqueItems: true }), '/uniqueItems: the keyword "uniqueItems" is not enforced'],
    [schema({ oneOf: [{ type: 'integer' }, { type: 'string' }] }), '(its exclusivity cannot be enforced; use anyOf)'],
    [schema({ type: 'object', properties: { x: { type: 'number', maximum: 1 } } }), '/properties/x: numeric bounds are enforced only on type "integer"'],
    [schema({ type: 'integer', minimum: 0, maximum: 100000 }), 'integer ranges are enforced up to 4096 values'],
    [schema({ type: 'string', pattern: '^[ -~]+$' }), '/pattern: the class [ -~] can match a character a JSON string must escape'],
    [schema({ type: 'string', format: 'iri' }), 'format "iri"'],
    [
      {
        type: 'tool_calls',
        mode: 'required',
        tools: [
          { name: 'a', parameters: {} },
          { name: 'a', parameters: {} },
        ],
        parallel: false,
      },
      'tools[1].name: "a" is listed twice',
    ],
    [{ type: 'tool_calls', mode: 'required', tools: [{ name: 'bad name', parameters: {} }], parallel: false }, 'grammar.tools[0].name'],
    [{ type: 'tool_calls', mode: 'auto', tools: [{ name: 'f', parameters: {} }], parallel: false }, '[TOOL_CALLS]'], // v1 has none
  ])('%j: 400 saying %s', async (grammar, message) => {
    const generate = await setup();
    expect((await refusal(await generate(grammar), 400)).message).toContain(message);
  });

  it("XGrammar's own refusal (a lookbehind) is a 400 with its message, and the check thread recovers", async () => {
    const generate = await setup();
    const error = await refusal(await generate(schema({ type: 'string', pattern: '(?<=a)b' })), 400);
    expect(error.message).toContain('Lookbehind is not supported');
    const ok = await generate(schema({ type: 'object', properties: { a: { type: 'boolean' } }, required: ['a'] }), { stream: false });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as GenerateResponse).choices[0].tokenIds.length).toBeGreaterThan(0);
  });

  it('too large: 413 before any compile; too slow (past the limit): 413, while other requests keep generating', async () => {
    const generate = await setup(new GrammarChecker({ modelDir: folder, timeLimitMs: 1 }));
    const huge = schema({ type: 'object', properties: Object.fromEntries(Array.from({ length: 4000 }, (_, i) => [`field_${i}`, { type: 'boolean' }])) });
    expect((await refusal(await generate(huge), 413)).message).toContain('over the limit');
    const plain = generate(undefined, { stream: false, sampling: { maxTokens: 32, ignoreEos: true, seed: 3 } });
    // No 32k-id compile finishes within 1 ms: the check thread is replaced and the request refused.
    expect((await refusal(await generate(schema({ type: 'object', properties: { b: { type: 'integer' } } })), 413)).message).toContain('longer than 1 ms');
    const answer = await plain;
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as GenerateResponse).choices[0].tokenIds).toHaveLength(32);
  });

  it('a backend without a vocabulary refuses grammars with a 400 and serves the rest', async () => {
    const generate = await setup(new GrammarChecker({ modelDir: null }));
    expect((await refusal(await generate({ type: 'json_object' }), 400)).message).toContain('does not support grammars');
    expect((await generate(undefined)).status).toBe(200);
    const without = await setup(null);
    expect((await refusal(await without({ type: 'json_object' }), 400)).message).toContain('does not support grammars');
  });
});
