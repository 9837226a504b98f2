// response_format through the edge (GrammarSpec sent to the backend, chat and completions), the official
// client's chat.completions.parse with zodResponseFormat, the 400s that name the field for bad schemas and
// tool requests, and the backend's grammar refusals mapped onto the public field.

import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { bearer, callEdge, createKey, fakeBackend, scriptedBackend } from '../test-support/edge-harness';
import { getDefaultTokenizer, overrideDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { referenceTokenizer } from '../tokenizer/test-fixtures';

const MODEL = 'mistral-tiny-random';
let secret: string;
let client: OpenAI;

beforeAll(async () => {
  secret = (await createKey()).secret;
  const edgeFetch = async (input: RequestInfo | URL, init?: RequestInit) =>
    (await callEdge(new URL(String(input instanceof Request ? input.url : input)).pathname, init)).response;
  client = new OpenAI({ apiKey: secret, baseURL: 'http://edge/v1', maxRetries: 0, fetch: edgeFetch as typeof fetch });
});
afterEach(() => {
  vi.restoreAllMocks();
  overrideDefaultTokenizer(undefined);
});

function post(path: string, body: Record<string, unknown>) {
  return callEdge(path, { method: 'POST', headers: bearer(secret), json: { model: MODEL, ...body } });
}
const chat = (body: Record<string, unknown>) => post('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], ...body });

async function refusal(response: Response): Promise<{ status: number; param: string; message: string }> {
  const { error } = (await response.json()) as { error: { param: string; message: string } };
  return { status: response.status, param: error.param, message: error.message };
}

const Weather = z.object({ city: z.string(), celsius: z.number(), rain: z.boolean().nullable(), kind: z.enum(['sun', 'cloud']) });

describe('structured output', () => {
  it('sends json_object and json_schema grammars, on chat and on completions', async () => {
    const schema = { type: 'object', properties: { a: { type: 'integer', minimum: 1 } }, required: ['a'] };
    const cases: [string, Record<string, unknown>, unknown][] = [
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' } }, { type: 'json_object' }],
      [
        '/v1/chat/completions',
        { messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_schema', json_schema: { name: 'a', schema, strict: true } } },
        { type: 'json_schema', schema },
      ],
      ['/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'text' } }, undefined],
      ['/v1/completions', { prompt: 'x', response_format: { type: 'json_schema', json_schema: { name: 'a', schema } } }, { type: 'json_schema', schema }],
      ['/v1/completions', { prompt: 'x', response_format: { type: 'json_object' } }, { type: 'json_object' }],
    ];
    for (const [path, body, grammar] of cases) {
      const backend = scriptedBackend(getDefaultTokenizer().encode('{"a": 1}'));
      const { response } = await post(path, body);
      expect(response.status).toBe(200);
      expect(backend[0].request.grammar).toEqual(grammar);
      vi.restoreAllMocks();
    }
  });

  it('serves chat.completions.parse with zodResponseFormat (nullable fields become null types)', async () => {
    const answer = { city: 'Paris', celsius: 21.5, rain: null, kind: 'sun' };
    const backend = scriptedBackend(getDefaultTokenizer().encode(JSON.stringify(answer)));
    const format = zodResponseFormat(Weather, 'weather');
    const completion = await client.chat.completions.parse({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], response_format: format });
    expect(completion.choices[0].message.parsed).toEqual(answer);
    const grammar = backend[0].request.grammar as { type: string; schema: Record<string, unknown> };
    expect(grammar.type).toBe('json_schema');
    const sent = JSON.stringify(grammar.schema);
    expect(sent).not.toContain('nullable');
    expect(sent).toContain('"type":["boolean","null"]');
  });

  it('refuses bad schemas with a 400 naming the field (413 when too large)', async () => {
    const field = 'response_format.json_schema.schema';
    const cases: [unknown, string][] = [
      [{ type: 'object', properties: { a: { type: 'string', not: { const: 'x' } } } }, '"not"'],
      [{ type: 'array', items: { type: 'integer' }, uniqueItems: true }, '"uniqueItems"'],
      // biome-ignore lint/suspicious/noThenProperty: JSON Schema's if/then, the keyword pair under test
      [{ type: 'object', if: { required: ['a'] }, then: { required: ['b'] } }, '"if"'],
      [{ type: 'strng' }, 'unknown type'],
      [{ type: 'object', properties: { a: { $ref: 'https://example.com/s.json' } } }, 'does not resolve inside the schema'],
      [{ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }, 'does not resolve'],
      [{ type: 'string', format: 'int32' }, 'format "int32" cannot be enforced'],
      [{ type: 'object', properties: { a: false } }, 'false schema'],
      [{ enum: [] }, 'non-empty array'],
      [{ type: 'string', minLength: 5, maxLength: 2 }, 'minLength 5 is greater than maxLength 2'],
      [{ allOf: [{ type: 'object' }, { type: 'object' }] }, '"allOf"'],
      [{ oneOf: [{ type: 'string' }, { type: 'integer' }] }, 'use anyOf'],
      [{ type: 'object', minProperties: 1 }, '"minProperties"'],
      [{ type: 'string', pattern: '([a-z' }, 'not a valid regular expression'],
    ];
    for (const [schema, words] of cases) {
      const { response } = await chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
      const error = await refusal(response);
      expect(error, JSON.stringify(schema)).toMatchObject({ status: 400, param: field });
      expect(error.message).toContain(words);
    }
    const wide = {
      type: 'object',
      properties: Object.fromEntries(Array.from({ length: 12_000 }, (_, i) => [`p${i}`, { type: 'string', description: 'x'.repeat(20) }])),
    };
    expect(await refusal((await chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: wide } } })).response)).toMatchObject({
      status: 413,
      param: field,
    });
    expect(await refusal((await chat({ response_format: { type: 'xml' } })).response)).toMatchObject({ status: 400, param: 'response_format.type' });
  });

  it('answers 413 for schemas nested thousands deep under the size limit, as object chains and as draft-07 tuples', async () => {
    // Sent as text: the test's own JSON.stringify would overflow the stack on these.
    for (const [open, close] of [
      ['{"items":', '}'],
      ['{"items":[', ']}'],
    ]) {
      const schema = `${open.repeat(5000)}{"type":"string"}${close.repeat(5000)}`;
      const body = `{"model":"${MODEL}","messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":${schema}}}}`;
      const { response } = await callEdge('/v1/chat/completions', { method: 'POST', headers: { ...bearer(secret), 'content-type': 'application/json' }, body });
      expect(await refusal(response), open).toMatchObject({ status: 413, param: 'response_format.json_schema.schema' });
    }
  });

  it('refuses bad tool requests with a 400 naming the field', async () => {
    overrideDefaultTokenizer(referenceTokenizer('v3'));
    const tool = (name: string, parameters: unknown = { type: 'object', properties: {} }) => ({ type: 'function', function: { name, parameters } });
    const cases: [Record<string, unknown>, string, string][] = [
      [{ tools: [tool('get weather')] }, 'tools[0].function.name', '^[a-zA-Z0-9_-]{1,64}$'],
      [{ tools: [tool('f'), tool('f')] }, 'tools[1].function.name', 'used by another tool'],
      [{ tools: [tool('f', { type: 'object', properties: { a: { type: 'string', not: {} } } })] }, 'tools[0].function.parameters', '"not"'],
      [{ tools: [tool('f', { type: 'string' })] }, 'tools[0].function.parameters', 'JSON object'],
      [{ tools: [tool('f')], tool_choice: { type: 'function', function: { name: 'g' } } }, 'tool_choice', "'g' is not in 'tools'"],
      [{ tool_choice: 'required' }, 'tool_choice', 'only when'],
      [{ tools: [tool('f')], response_format: { type: 'json_object' } }, 'response_format', 'cannot be combined with tools'],
      [
        {
          tools: [tool('f')],
          messages: [
            { role: 'user', content: 'q' },
            { role: 'tool', tool_call_id: 'abcdefghi', content: '1' },
          ],
        },
        'messages[1].role',
        'must follow an assistant message with tool_calls',
      ],
      [
        {
          tools: [tool('f')],
          messages: [
            { role: 'user', content: 'q' },
            { role: 'assistant', tool_calls: [{ id: 'abcdefghi', type: 'function', function: { name: 'f', arguments: '{}' } }] },
            { role: 'tool', tool_call_id: 'zzzzzzzzz', content: '1' },
          ],
        },
        'messages[2].tool_call_id',
        'matches no tool call',
      ],
      [
        {
          messages: [
            { role: 'user', content: 'q' },
            { role: 'assistant', tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] },
          ],
        },
        'messages[1].tool_calls[0].id',
        '9 letters or digits',
      ],
      [
        {
          messages: [
            { role: 'user', content: 'q' },
            { role: 'tool', content: '1' },
          ],
        },
        'messages[1].tool_call_id',
        'needs the tool_call_id',
      ],
    ];
    for (const [body, param, words] of cases) {
      const error = await refusal((await chat(body)).response);
      expect(error, param).toMatchObject({ status: 400, param });
      expect(error.message).toContain(words);
    }
    overrideDefaultTokenizer(undefined);
    const v1 = await refusal((await chat({ tools: [tool('f')] })).response);
    expect(v1).toMatchObject({ status: 400, param: 'tools' });
    expect(v1.message).toContain("this model's tokenizer has no tool-call tokens");
    // response_format needs no tool tokens: it works on v1.
    scriptedBackend(getDefaultTokenizer().encode('{}'));
    expect((await chat({ response_format: { type: 'json_object' } })).response.status).toBe(200);
  });

  it("maps the backend's grammar refusals onto the public field, and hides other backend messages", async () => {
    const answer = (status: number, param: string | null) =>
      fakeBackend(
        () =>
          new Response(
            JSON.stringify({
              error: {
                message: 'pattern uses a lookahead, which the grammar engine cannot compile',
                type: 'invalid_request_error',
                param,
                code: 'invalid_request',
              },
            }),
            { status },
          ),
      );
    answer(400, 'grammar');
    const schema = { type: 'string', pattern: '^(?=a)a$' };
    const bad = await refusal((await chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } })).response);
    expect(bad).toMatchObject({ status: 400, param: 'response_format' });
    expect(bad.message).toContain('lookahead');
    vi.restoreAllMocks();
    answer(413, 'grammar');
    overrideDefaultTokenizer(referenceTokenizer('v3'));
    const big = await refusal((await chat({ tools: [{ type: 'function', function: { name: 'f' } }], stream: true })).response);
    expect(big).toMatchObject({ status: 413, param: 'tools' });
    vi.restoreAllMocks();
    answer(400, 'sampling');
    const other = await refusal((await chat({ response_format: { type: 'json_object' } })).response);
    expect(other).toMatchObject({ status: 400, param: null });
    expect(other.message).not.toContain('lookahead');
  });
});
