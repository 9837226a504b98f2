// Function calling end to end on the built-in v3 model (`npm start -- --model builtin-v3`): a real backend, the
// edge in workerd bundling the built-in v3 tokenizer, and the official `openai` client. The weights are random,
// so only calls the grammar forces (tool_choice "required" or a named function) are asserted to be valid.

import OpenAI from 'openai';
import type { ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import { zodFunction } from 'openai/helpers/zod';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareBuiltinV3Model } from '../scripts/builtin-v3-model';
import type { Stack } from '../scripts/stack';
import { startTestStack } from './test-stack';

const WEATHER = z.object({ city: z.string().max(8), unit: z.enum(['celsius', 'fahrenheit']) });
const ADD = z.object({ a: z.number().int().min(0).max(99), b: z.number().int().min(0).max(99) });
const TOOLS: ChatCompletionTool[] = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Current weather in a city.',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', maxLength: 8 }, unit: { enum: ['celsius', 'fahrenheit'] } },
        required: ['city', 'unit'],
      },
    },
  },
  {
    type: 'function',
    function: {
      name: 'add',
      description: 'Adds two numbers.',
      parameters: {
        type: 'object',
        properties: { a: { type: 'integer', minimum: 0, maximum: 99 }, b: { type: 'integer', minimum: 0, maximum: 99 } },
        required: ['a', 'b'],
      },
    },
  },
];
const QUESTION: ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
// Enough for one call with bounded arguments; a call cut short would fail the argument checks below. Random
// weights seldom close a call list: each request asks for one call (parallel_tool_calls false), which the grammar ends.
const MAX_TOKENS = 96;

let stack: Stack;
let client: OpenAI;
const logLines: string[] = [];

beforeAll(async () => {
  const { modelDir, tokenizerAsset } = await prepareBuiltinV3Model();
  stack = await startTestStack('tools-e2e-edge', logLines, { modelDir, tokenizerAsset });
  client = new OpenAI({ baseURL: `${stack.edgeUrl}/v1`, apiKey: stack.apiKey, maxRetries: 0 });
}, 240_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

/** The edge's prompt ids for a chat (POST /tokenize), as the completion is charged for them. */
async function promptIds(messages: ChatCompletionMessageParam[], tools?: ChatCompletionTool[]): Promise<number[]> {
  const response = await fetch(`${stack.edgeUrl}/tokenize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: stack.modelInfo.modelId, messages, tools }),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  return ((await response.json()) as { tokens: number[] }).tokens;
}

function functionCalls(message: OpenAI.Chat.ChatCompletionMessage): ChatCompletionMessageFunctionToolCall[] {
  const calls = message.tool_calls ?? [];
  for (const call of calls) expect(call.type).toBe('function');
  return calls as ChatCompletionMessageFunctionToolCall[];
}

describe('function calling on the built-in v3 model, through the openai client', () => {
  it('serves mistral-tiny-random-v3 with a v3 prompt: [INST]=3, [AVAILABLE_TOOLS]=6, text ids of v1 + 768', async () => {
    expect(stack.modelInfo).toMatchObject({ modelId: 'mistral-tiny-random-v3', vocabSize: 32768, slidingWindow: null });
    expect((await client.models.list()).data.map((m) => m.id)).toEqual(['mistral-tiny-random-v3']);
    // "Hi" is 15359 in v1, so 16127 in v3.
    expect(await promptIds([{ role: 'user', content: 'Hi' }])).toEqual([1, 3, 16127, 4]);
    const withTools = await promptIds(QUESTION, TOOLS);
    expect(withTools.slice(0, 2)).toEqual([1, 6]);
    expect(withTools).toContain(7);
  });

  it('tool_choice "required": one call to a listed tool whose arguments match its schema', async () => {
    const completion = await client.chat.completions.create({
      model: stack.modelInfo.modelId,
      messages: QUESTION,
      tools: TOOLS,
      tool_choice: 'required',
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
      seed: 1,
    });
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    const calls = functionCalls(choice!.message);
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call!.id).toMatch(/^[a-zA-Z0-9]{9}$/);
    const schema = call!.function.name === 'add' ? ADD : WEATHER;
    expect(['add', 'get_weather']).toContain(call!.function.name);
    expect(schema.safeParse(JSON.parse(call!.function.arguments)).success, call!.function.arguments).toBe(true);
    expect(completion.usage!.prompt_tokens).toBe((await promptIds(QUESTION, TOOLS)).length);
  });

  it('a named function, streamed: the client assembles the argument deltas into the call', async () => {
    const stream = client.chat.completions.stream({
      model: stack.modelInfo.modelId,
      messages: [{ role: 'user', content: 'Add two numbers.' }],
      tools: TOOLS,
      tool_choice: { type: 'function', function: { name: 'add' } },
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
      seed: 2,
    });
    const argumentDeltas: string[] = [];
    stream.on('tool_calls.function.arguments.delta', (event) => argumentDeltas.push(event.arguments_delta));
    const completion = await stream.finalChatCompletion();
    const [choice] = completion.choices;
    expect(choice!.finish_reason).toBe('tool_calls');
    const [call] = functionCalls(choice!.message);
    expect(call!.function.name).toBe('add');
    // Streamed piece by piece, and the pieces are the whole arguments.
    expect(argumentDeltas.length).toBeGreaterThan(1);
    expect(argumentDeltas.join('')).toBe(call!.function.arguments);
    expect(ADD.safeParse(JSON.parse(call!.function.arguments)).success, call!.function.arguments).toBe(true);
  });

  it('a tool result turn: the call and its result go into the prompt, and the model answers', async () => {
    const first = await client.chat.completions.create({
      model: stack.modelInfo.modelId,
      messages: QUESTION,
      tools: TOOLS,
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
      seed: 3,
    });
    const [call] = functionCalls(first.choices[0]!.message);
    const messages: ChatCompletionMessageParam[] = [
      ...QUESTION,
      { role: 'assistant', content: null, tool_calls: [call!] },
      { role: 'tool', tool_call_id: call!.id, content: JSON.stringify({ temperature: 21, unit: 'celsius' }) },
    ];
    const answer = await client.chat.completions.create({
      model: stack.modelInfo.modelId,
      messages,
      tools: TOOLS,
      tool_choice: 'none',
      max_tokens: 8,
      seed: 4,
    });
    const [choice] = answer.choices;
    expect(['length', 'stop']).toContain(choice!.finish_reason);
    expect(choice!.message.tool_calls ?? []).toEqual([]);
    expect(choice!.message.content?.length).toBeGreaterThan(0);
    // [TOOL_CALLS] (5) for the past call, [TOOL_RESULTS] (8) ... [/TOOL_RESULTS] (9) for its result; "none" leaves the tools out.
    const prompt = await promptIds(messages);
    expect(prompt.filter((id) => id === 5 || id === 8 || id === 9)).toEqual([5, 8, 9]);
    expect(answer.usage!.prompt_tokens).toBe(prompt.length);
  });

  it('zodFunction tools with chat.completions.parse: parsed_arguments typed by the zod schema', async () => {
    const completion = await client.chat.completions.parse({
      model: stack.modelInfo.modelId,
      messages: QUESTION,
      tools: [zodFunction({ name: 'get_weather', parameters: WEATHER }), zodFunction({ name: 'add', parameters: ADD })],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      max_tokens: MAX_TOKENS,
      seed: 5,
    });
    const [call] = completion.choices[0]!.message.tool_calls ?? [];
    expect(call!.type).toBe('function');
    if (call!.type !== 'function') return;
    expect(call!.function.name).toBe('get_weather');
    const parsed = call!.function.parsed_arguments as z.infer<typeof WEATHER>;
    expect(WEATHER.parse(parsed)).toEqual(JSON.parse(call!.function.arguments));
    expect(['celsius', 'fahrenheit']).toContain(parsed.unit);
  });
});
