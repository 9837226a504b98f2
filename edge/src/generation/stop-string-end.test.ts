// A stop string ends the backend request through POST /v1/stop before the fetch is cancelled (so the backend
// counts a stop, not an abort), without holding back the client's answer; a client that leaves is stopped as
// "client_closed" (an abort to the backend), never as a stop string.

import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { StopRequest } from '../../../shared/protocol';
import { getDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { BACKEND, BackendStream, bearer, callEdge, createKey, fakeBackend, readSse, sseResponse, type StopHandler } from '../test-support/edge-harness';

let secret: string;

beforeAll(async () => {
  secret = (await createKey()).secret;
});
afterEach(() => {
  vi.restoreAllMocks();
});

function chat(body: Record<string, unknown>) {
  return callEdge('/v1/chat/completions', {
    method: 'POST',
    headers: bearer(secret),
    json: { model: 'mistral-tiny-random', messages: [{ role: 'user', content: 'Hi' }], ...body },
  });
}

/** A backend whose stop answer the test releases; it records what the generate fetch looked like when the stop came. */
function heldStop() {
  const stream = new BackendStream();
  const seen: { stop: StopRequest; url: string; generateAborted: boolean; bodyCancelled: boolean }[] = [];
  let release!: (response: Response) => void;
  const answer = new Promise<Response>((resolve) => (release = resolve));
  const onStop: StopHandler = (stop, url) => {
    seen.push({ stop, url, generateAborted: calls[0].signal.aborted, bodyCancelled: stream.cancelled });
    return answer;
  };
  const calls = fakeBackend(() => sseResponse(stream), { onStop });
  return { stream, calls, seen, release };
}

const sendText = (stream: BackendStream, text: string, choice = 0) => {
  for (const id of getDefaultTokenizer().encode(text)) stream.send('token', { choice, tokenIds: [id] });
};

describe('stop strings end the backend request with /v1/stop', () => {
  it('streaming: tells the backend first, answers the client without waiting, then ends the fetch', async () => {
    const backend = heldStop();
    const { response, settle } = await chat({ stream: true, stop: ['STOP'] });
    sendText(backend.stream, 'one two STOP three');
    // The client's answer is complete while the backend has not answered the stop yet.
    const { data, done } = await readSse(response);
    expect(done).toBe(true);
    expect(JSON.stringify(data)).toContain('"finish_reason":"stop"');
    await vi.waitFor(() => expect(backend.seen).toHaveLength(1));
    expect(backend.seen[0]).toEqual({
      stop: { requestId: backend.calls[0].request.requestId, reason: 'stop_string' },
      url: `${BACKEND}/v1/stop`,
      generateAborted: false,
      bodyCancelled: false,
    });
    expect(backend.calls[0].signal.aborted).toBe(false);
    backend.release(new Response(null, { status: 204 }));
    await settle();
    expect(backend.calls[0].signal.aborted).toBe(true);
    expect(backend.stream.cancelled).toBe(true);
  });

  it('non-streaming: the same order, and the response does not wait for the stop', async () => {
    const backend = heldStop();
    const pending = chat({ stop: ['STOP'] });
    await vi.waitFor(() => expect(backend.calls).toHaveLength(1));
    sendText(backend.stream, 'alpha STOP beta');
    const { response, settle } = await pending;
    expect(((await response.json()) as { choices: { message: { content: string } }[] }).choices[0].message.content).toBe('alpha ');
    await vi.waitFor(() => expect(backend.seen).toHaveLength(1));
    expect(backend.seen[0].generateAborted).toBe(false);
    backend.release(new Response(null, { status: 204 }));
    await settle();
    expect(backend.calls[0].signal.aborted).toBe(true);
  });

  it('a stop the backend refuses or cannot take still ends the fetch', async () => {
    for (const failure of [() => new Response('{}', { status: 500 }), () => Promise.reject(new Error('connection refused'))]) {
      const stream = new BackendStream();
      const calls = fakeBackend(() => sseResponse(stream), { onStop: failure });
      const logged = vi.spyOn(console, 'error').mockImplementation(() => undefined);
      const { response, settle } = await chat({ stream: true, stop: ['STOP'] });
      sendText(stream, 'x STOP');
      expect((await readSse(response)).done).toBe(true);
      await settle();
      expect(calls[0].signal.aborted).toBe(true);
      expect(logged.mock.calls.flat().join(' ')).toMatch(/\/v1\/stop/);
      vi.restoreAllMocks();
    }
  });

  it('sends no stop string while another choice is still generating; a client that leaves is stopped as client_closed', async () => {
    const backend = heldStop();
    const { response, settle } = await chat({ stream: true, stop: ['STOP'], n: 2 });
    const reader = response.body!.getReader();
    sendText(backend.stream, 'a STOP', 0);
    sendText(backend.stream, 'b b b', 1);
    // Read until choice 0 has finished on its stop string.
    let text = '';
    while (!text.includes('"finish_reason":"stop"')) text += new TextDecoder().decode((await reader.read()).value);
    expect(backend.seen).toEqual([]);
    await reader.cancel();
    await vi.waitFor(() => expect(backend.seen).toHaveLength(1));
    expect(backend.seen[0]).toMatchObject({ stop: { requestId: backend.calls[0].request.requestId, reason: 'client_closed' }, generateAborted: false });
    backend.release(new Response(null, { status: 204 }));
    await settle();
    expect(backend.calls[0].signal.aborted).toBe(true);
  });
});
