// Function calling through the edge with a v3 tokenizer and a scripted backend: the GrammarSpec each
// tool_choice sends, [TOOL_CALLS] output as OpenAI tool_calls (non-streamed, and streamed deltas assembled by
// the official openai client's stream helper), content before a call, plain answers, garbage and cut-off output.

import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { bearer, callEdge, createKey, readSse, scriptedBackend } from '../test-support/edge-harness';
import { overrideDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { referenceTokenizer } from '../tokenizer/test-fixtures';

const MODEL = 'mistral-tiny-random';
const TOOL_CALLS = 5;
const AVAILABLE_TOOLS = 6;
const TOOLS = [
  {
    type: 'function' as const,
    function: { name: 'get_weather', description: 'Weather now', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
  },
  { type: 'function' as const, function: { name: 'send_email', parameters: { type: 'object', properties: { to: { type: 'string' } } } } },
];
const CALLS = [
  { name: 'get_weather', arguments: { city: 'Paris, France' } },
  { name: 'send_email', arguments: { to: 'a@b.c' } },
];
const v3 = () => referenceTokenizer('v3');
/** What a v3 model writes: [TOOL_CALLS] then " [{...}]" (json.dumps spacing); EOS ends it (the backend's finish). */
const callIds = (calls: unknown[]) => [TOOL_CALLS, ...v3().encode(JSON.stringify(calls, null, 0).replaceAll('":', '": ').replaceAll(',"', ', "'))];

let secret: string;
let client: OpenAI;

beforeAll(async () => {
  overrideDefaultTokenizer(referenceTokenizer('v3'));
  secret = (await createKey()).secret;
  const edgeFetch = async (input: RequestInfo | URL, init?: RequestInit) =>
    (await callEdge(new URL(String(input instanceof Request ? input.url : input)).pathname, init)).response;
  client = new OpenAI({ apiKey: secret, baseURL: 'http://edge/v1', maxRetries: 0, fetch: edgeFetch as typeof fetch });
});
afterAll(() => overrideDefaultTokenizer(undefined));
afterEach(() => vi.restoreAllMocks());

function chat(body: Record<string, unknown>) {
  return callEdge('/v1/chat/completions', {
    method: 'POST',
    headers: bearer(secret),
    json: { model: MODEL, messages: [{ role: 'user', content: 'Weather in Paris?' }], ...body },
  });
}

type ToolCall = { id: string; type: string; function: { name: string; arguments: string } };
type Completion = { choices: { message: { content: string | null; tool_calls?: ToolCall[] }; finish_reason: string }[] };
const parsed = (calls: ToolCall[] | undefined) =>
  (calls ?? []).map((call) => ({ name: call.function.name, arguments: JSON.parse(call.function.arguments) as unknown }));

describe('tool calls at the edge (v3)', () => {
  it('sends the grammar each tool_choice asks for, and the tools in the prompt', async () => {
    const cases: [Record<string, unknown>, unknown][] = [
      [{}, { type: 'tool_calls', mode: 'auto', tools: TOOLS.map((t) => ({ name: t.function.name, parameters: t.function.parameters })), parallel: true }],
      [
        { tool_choice: 'required', parallel_tool_calls: false },
        { type: 'tool_calls', mode: 'required', tools: TOOLS.map((t) => ({ name: t.function.name, parameters: t.function.parameters })), parallel: false },
      ],
      [
        { tool_choice: { type: 'function', function: { name: 'send_email' } } },
        { type: 'tool_calls', mode: 'required', tools: [{ name: 'send_email', parameters: TOOLS[1].function.parameters }], parallel: true },
      ],
      [{ tool_choice: 'none' }, undefined],
    ];
    for (const [fields, grammar] of cases) {
      const backend = scriptedBackend(v3().encode('ok'));
      const { response } = await chat({ tools: TOOLS, ...fields });
      expect(response.status).toBe(200);
      expect(backend[0].request.grammar).toEqual(grammar);
      // "none" leaves the tools out of the prompt (vLLM's --exclude-tools-when-tool-choice-none).
      expect(backend[0].request.tokenIds.includes(AVAILABLE_TOOLS)).toBe(grammar !== undefined);
      vi.restoreAllMocks();
    }
  });

  it('answers [TOOL_CALLS] output with message.tool_calls and finish_reason "tool_calls"; text before is content', async () => {
    scriptedBackend([...v3().encode('Let me check.'), ...callIds(CALLS)]);
    const { response } = await chat({ tools: TOOLS });
    const body = (await response.json()) as Completion;
    const [choice] = body.choices;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBe('Let me check.');
    expect(parsed(choice.message.tool_calls)).toEqual(CALLS);
    for (const call of choice.message.tool_calls!) {
      expect(call.id).toMatch(/^[a-zA-Z0-9]{9}$/);
      expect(call.type).toBe('function');
    }
    scriptedBackend(callIds(CALLS.slice(0, 1)));
    const only = (await (await chat({ tools: TOOLS })).response.json()) as Completion;
    expect(only.choices[0].message.content).toBeNull();
    expect(parsed(only.choices[0].message.tool_calls)).toEqual(CALLS.slice(0, 1));
  });

  it('streams deltas that the openai client assembles into the same calls', async () => {
    scriptedBackend([...v3().encode('Let me check.'), ...callIds(CALLS)]);
    const stream = client.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: TOOLS });
    const final = await stream.finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe('tool_calls');
    expect(final.choices[0].message.content).toBe('Let me check.');
    const calls = final.choices[0].message.tool_calls!.map((c) => c as ToolCall);
    expect(parsed(calls)).toEqual(CALLS);
    expect(calls.every((c) => /^[a-zA-Z0-9]{9}$/.test(c.id))).toBe(true);
  });

  it('streams each call first as id, type and name at its index, then argument fragments', async () => {
    scriptedBackend(callIds(CALLS));
    const { response } = await chat({ tools: TOOLS, stream: true });
    const { data } = await readSse(response);
    type Delta = { index: number; id?: string; type?: string; function: { name?: string; arguments: string } };
    const deltas = (data as { choices: { delta: { tool_calls?: Delta[] } }[] }[]).flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
    const headers = deltas.filter((d) => d.id);
    expect(headers.map((d) => [d.index, d.type, d.function.name, d.function.arguments])).toEqual([
      [0, 'function', 'get_weather', ''],
      [1, 'function', 'send_email', ''],
    ]);
    for (const index of [0, 1]) {
      const mine = deltas.filter((d) => d.index === index);
      expect(mine[0].id).toBeDefined();
      expect(JSON.parse(mine.map((d) => d.function.arguments).join(''))).toEqual(CALLS[index].arguments);
    }
    expect(deltas.filter((d) => !d.id).length).toBeGreaterThan(2); // arguments arrive in pieces, as tokens do
  });

  it('gives plain content when an auto answer has no [TOOL_CALLS]', async () => {
    scriptedBackend(v3().encode('It is sunny.'));
    const body = (await (await chat({ tools: TOOLS })).response.json()) as Completion;
    expect(body.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'It is sunny.' } });
    expect(body.choices[0].message.tool_calls).toBeUndefined();
  });

  it('returns what follows [TOOL_CALLS] as content when it is no call list, streamed or not', async () => {
    const garbage = [TOOL_CALLS, ...v3().encode('I would call get_weather here.')];
    scriptedBackend(garbage);
    const body = (await (await chat({ tools: TOOLS })).response.json()) as Completion;
    expect(body.choices[0]).toMatchObject({ finish_reason: 'stop', message: { content: 'I would call get_weather here.' } });
    expect(body.choices[0].message.tool_calls).toBeUndefined();
    scriptedBackend(garbage);
    const final = await client.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: TOOLS }).finalChatCompletion();
    expect(final.choices[0].message.content).toBe('I would call get_weather here.');
    expect(final.choices[0].finish_reason).toBe('stop');
  });

  it('keeps a call cut off by max_tokens, with finish_reason "length", streamed or not', async () => {
    const ids = callIds(CALLS.slice(0, 1));
    const cut = ids.slice(0, ids.length - 4);
    scriptedBackend(cut, 'length');
    const body = (await (await chat({ tools: TOOLS })).response.json()) as Completion;
    expect(body.choices[0].finish_reason).toBe('length');
    const partial = body.choices[0].message.tool_calls![0].function.arguments;
    expect('{"city": "Paris, France"}'.startsWith(partial)).toBe(true);
    expect(partial.length).toBeGreaterThan(0);
    scriptedBackend(cut, 'length');
    const final = await client.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: TOOLS }).finalChatCompletion();
    expect(final.choices[0].finish_reason).toBe('length');
    expect(final.choices[0].message.tool_calls?.[0].type === 'function' && final.choices[0].message.tool_calls[0].function.arguments).toBe(partial);
  });

  it('leaves [TOOL_CALLS] output as text under tool_choice "none"', async () => {
    scriptedBackend(callIds(CALLS.slice(0, 1)));
    const body = (await (await chat({ tools: TOOLS, tool_choice: 'none' })).response.json()) as Completion;
    expect(body.choices[0].finish_reason).toBe('stop');
    expect(body.choices[0].message.tool_calls).toBeUndefined();
    expect(body.choices[0].message.content).toContain('"get_weather"');
  });

  it('takes its own calls and their results back as history', async () => {
    const backend = scriptedBackend(v3().encode('22 degrees.'));
    const messages = [
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'AbC123xyz', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'AbC123xyz', content: '22' },
    ];
    const { response } = await chat({ tools: TOOLS, messages });
    expect(response.status).toBe(200);
    const prompt = backend[0].request.tokenIds;
    const tail = [
      TOOL_CALLS,
      ...v3().encode('[{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "AbC123xyz"}]'),
      2,
      8,
      ...v3().encode('{"content": 22, "call_id": "AbC123xyz"}'),
      9,
    ];
    expect(prompt.slice(-tail.length)).toEqual(tail);
  });
});
