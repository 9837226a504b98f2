// A client that leaves mid-stream the way a real one does: a streaming chat over a connection of its own,
// read until it has seen `count` tokens (logprobs: one entry per token), then its TCP socket destroyed.
// Shared by the billing test (test/key-usage-billing.test.ts) and bench:drop-billing.

import http from 'node:http';
import { SseParser } from '../shared/sse';

export interface OpenStream {
  /** Tokens the client had seen when it stopped reading (at least the count asked for). */
  seen: number;
  /** Destroys the socket; returns performance.now() at that moment. */
  drop(): number;
}

/** POSTs `body` (a streaming chat with logprobs) to the edge; resolves once `count` tokens arrived, reading no further. */
export function streamUntilTokens(edgeUrl: string, secret: string, body: Record<string, unknown>, count: number): Promise<OpenStream> {
  return new Promise((resolve, reject) => {
    const request = http.request(`${edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    });
    request.on('error', reject);
    request.on('response', (response) => {
      const parser = new SseParser();
      let seen = 0;
      response.setEncoding('utf8');
      response.on('data', (text: string) => {
        for (const message of parser.push(text)) {
          if (message.data !== '[DONE]')
            seen += (JSON.parse(message.data) as { choices: { logprobs?: { content?: unknown[] } }[] }).choices[0]?.logprobs?.content?.length ?? 0;
        }
        if (seen < count) return;
        response.removeAllListeners('data');
        request.removeListener('error', reject);
        request.on('error', () => undefined);
        resolve({
          seen,
          drop: () => {
            request.destroy();
            return performance.now();
          },
        });
      });
      response.on('end', () => reject(new Error(`the stream ended after ${seen} tokens, before the client left`)));
    });
    request.end(JSON.stringify(body));
  });
}
