// The playground's stream reader and request fields (edge/public/chat-stream.js), in Node: SSE events and
// UTF-8 characters split across network chunks, comments, in-band errors, and blank-means-default fields.

import { describe, expect, it } from 'vitest';

interface ChatStream {
  sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string>;
  chatEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<{ type: string; text?: string; reason?: string; message?: string; usage?: unknown }>;
  samplingFields(fields: Record<string, string>): Record<string, unknown>;
  describeError(error: { status: number; message: string; param: string | null; code: string | null; retryAfter: string | null }): string;
}

// The page's own file, as the browser loads it (plain JS, no build step).
const page = (await import(new URL('../edge/public/chat-stream.js', import.meta.url).href)) as ChatStream;

/** A body delivered in the given byte pieces, as a network may cut it. */
function bodyOf(text: string, cuts: number[]): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(text);
  const edges = [0, ...cuts, bytes.length];
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i + 1 < edges.length; i++) controller.enqueue(bytes.slice(edges[i], edges[i + 1]));
      controller.close();
    },
  });
}

async function collect<T>(events: AsyncGenerator<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const event of events) out.push(event);
  return out;
}

const chunk = (content: string) =>
  `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;

describe('playground stream reader', () => {
  const stream =
    ': ping\n\n' +
    chunk('Grüße, ') +
    chunk('世界 🌍') +
    `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'length' }] })}\n\n` +
    `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 2 } } })}\n\n` +
    'data: [DONE]\n\n';

  it('gives the same events however the bytes are cut, including inside characters and "\\n\\n"', async () => {
    const whole = await collect(page.chatEvents(bodyOf(stream, [])));
    expect(whole).toEqual([
      { type: 'delta', text: 'Grüße, ' },
      { type: 'delta', text: '世界 🌍' },
      { type: 'finish', reason: 'length' },
      { type: 'usage', usage: { prompt_tokens: 5, completion_tokens: 3, prompt_tokens_details: { cached_tokens: 2 } } },
    ]);
    const length = new TextEncoder().encode(stream).length;
    for (let cut = 1; cut < length; cut++) expect(await collect(page.chatEvents(bodyOf(stream, [cut])))).toEqual(whole);
    const everyByte = Array.from({ length: length - 1 }, (_, i) => i + 1);
    expect(await collect(page.chatEvents(bodyOf(stream, everyByte)))).toEqual(whole);
  });

  it('reads CRLF framing and multi-line data, and reports in-band errors', async () => {
    const framed = 'data: a\r\ndata: b\r\n\r\ndata:c\r\rdata: d\n\n';
    for (let cut = 1; cut < framed.length; cut++) expect(await collect(page.sseData(bodyOf(framed, [cut]))), `cut at ${cut}`).toEqual(['a\nb', 'c', 'd']);
    const failed = `${chunk('partial')}data: ${JSON.stringify({ error: { message: 'The connection to the model backend was lost.' } })}\n\ndata: [DONE]\n\n`;
    expect(await collect(page.chatEvents(bodyOf(failed, [])))).toEqual([
      { type: 'delta', text: 'partial' },
      { type: 'error', message: 'The connection to the model backend was lost.' },
    ]);
  });
});

describe('playground request fields', () => {
  it('leaves blanks to the server, sends numbers as numbers and anything else as typed', () => {
    expect(page.samplingFields({ temperature: '', top_p: ' ', max_tokens: '', seed: '', stop: '' })).toEqual({});
    expect(page.samplingFields({ temperature: '0.7', top_p: '1', max_tokens: '64', seed: '-3', stop: 'END\n\n###' })).toEqual({
      temperature: 0.7,
      top_p: 1,
      max_tokens: 64,
      seed: -3,
      stop: ['END', '###'],
    });
    expect(page.samplingFields({ temperature: 'hot' })).toEqual({ temperature: 'hot' });
  });

  it('words errors with the field and the retry-after', () => {
    expect(page.describeError({ status: 400, message: 'Invalid value', param: 'top_p', code: 'invalid_request', retryAfter: null })).toBe(
      '400: Invalid value (field: top_p)',
    );
    expect(page.describeError({ status: 429, message: 'Slow down.', param: null, code: 'rate_limit_exceeded', retryAfter: '3' })).toBe(
      '429: Slow down. Retry after 3 s.',
    );
  });
});
