// The playground's talk with this origin's API, without the DOM: the request body from the form's values,
// the OpenAI-shaped errors, and chat.completion.chunk SSE read as it arrives. Checked by tsc (checkJs).

/**
 * @typedef {{ status: number, message: string, param: string | null, code: string | null, retryAfter: string | null }} ApiError
 * @typedef {{ prompt_tokens: number, completion_tokens: number, prompt_tokens_details?: { cached_tokens?: number } }} Usage
 * @typedef {{ type: 'delta', text: string } | { type: 'finish', reason: string } | { type: 'usage', usage: Usage }
 *   | { type: 'error', message: string }} StreamEvent
 */

/**
 * The request's sampling fields from the form's strings: blank means "server default". A value that is not a
 * number goes as typed, so the API's 400 names the field instead of the page guessing.
 * @param {Record<string, string>} fields temperature, top_p, max_tokens, seed, stop (one per line)
 * @returns {Record<string, unknown>}
 */
export function samplingFields(fields) {
  /** @type {Record<string, unknown>} */
  const body = {};
  for (const name of ['temperature', 'top_p', 'max_tokens', 'seed']) {
    const raw = (fields[name] ?? '').trim();
    if (raw === '') continue;
    const value = Number(raw);
    body[name] = Number.isFinite(value) ? value : raw;
  }
  const stop = (fields.stop ?? '').split('\n').filter((line) => line !== '');
  if (stop.length > 0) body.stop = stop;
  return body;
}

/**
 * @param {Response} response a non-2xx answer of the API
 * @returns {Promise<ApiError>}
 */
export async function apiError(response) {
  /** @type {ApiError} */
  const error = {
    status: response.status,
    message: `HTTP ${response.status} ${response.statusText}`.trim(),
    param: null,
    code: null,
    retryAfter: response.headers.get('retry-after'),
  };
  try {
    const body = await response.json();
    if (body && typeof body.error?.message === 'string') {
      error.message = body.error.message;
      error.param = typeof body.error.param === 'string' ? body.error.param : null;
      error.code = typeof body.error.code === 'string' ? body.error.code : null;
    }
  } catch {
    // Not JSON (a proxy's page, say): the status line is all there is.
  }
  return error;
}

/** @param {ApiError} error */
export function describeError(error) {
  let text = `${error.status}: ${error.message}`;
  if (error.param) text += ` (field: ${error.param})`;
  if (error.status === 429 && error.retryAfter) text += ` Retry after ${error.retryAfter} s.`;
  return text;
}

/**
 * The `data:` payloads of an SSE body, one string per event, as they arrive. Comments (`: ping`) are skipped;
 * events split across network chunks, or characters split across bytes, are put back together.
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<string>}
 */
export async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let pending = '';
  /** A CR that ended a chunk: it may be the first half of a CRLF, so it waits for the next chunk. */
  let carry = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      let text = carry + decoder.decode(value, { stream: true });
      carry = text.endsWith('\r') ? '\r' : '';
      if (carry) text = text.slice(0, -1);
      pending += text.replace(/\r\n?/g, '\n');
      let end;
      while ((end = pending.indexOf('\n\n')) !== -1) {
        const block = pending.slice(0, end);
        pending = pending.slice(end + 2);
        const data = block
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5));
        if (data.length > 0) yield data.join('\n');
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * chat.completion.chunk payloads -> what the page shows: text deltas of choice 0, its finish reason, the usage
 * chunk, and in-band errors (after the 200, errors travel as `{ error }` in the stream).
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<StreamEvent>}
 */
export async function* chatEvents(body) {
  for await (const data of sseData(body)) {
    if (data === '[DONE]') return;
    const chunk = JSON.parse(data);
    if (chunk.error) {
      yield { type: 'error', message: String(chunk.error.message ?? 'The stream failed.') };
      continue;
    }
    const choice = chunk.choices?.[0];
    if (typeof choice?.delta?.content === 'string' && choice.delta.content !== '') yield { type: 'delta', text: choice.delta.content };
    if (choice?.finish_reason) yield { type: 'finish', reason: choice.finish_reason };
    if (chunk.usage) yield { type: 'usage', usage: chunk.usage };
  }
}
