// Reads the backend's SSE body (shared/sse.ts framing) as typed GenerateEvents; anything malformed becomes
// a thrown error, so the caller can turn it into an in-band error without echoing backend text.

import type { GenerateEvent } from '../../../shared/protocol';
import { SseParser } from '../../../shared/sse';
import { edgeMetrics } from '../observability/edge-metrics';

const EVENT_NAMES = new Set(['token', 'finish', 'end', 'error']);

export class BackendStreamError extends Error {}

/** reader.read(), or a BackendStreamError once `idleMs` pass without a chunk (a stopped or wedged backend). */
async function readWithin(reader: ReadableStreamDefaultReader<Uint8Array>, idleMs: number): Promise<ReadableStreamReadResult<Uint8Array>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      edgeMetrics.countBackendAttempt('idle_timeout');
      reject(new BackendStreamError(`backend sent nothing for ${idleMs} ms`));
    }, idleMs);
  });
  try {
    return await Promise.race([reader.read(), silent]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `idleMs`: longest silence allowed between chunks (the backend's `: ping` comments count as chunks).
 * `ownerCloses`: true when the body's owner closes it itself after leaving early (a lease telling a stop).
 */
export async function* readBackendEvents(body: ReadableStream<Uint8Array>, idleMs: number, ownerCloses = () => false): AsyncGenerator<GenerateEvent> {
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await readWithin(reader, idleMs);
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      for (const message of parser.push(text)) {
        if (!EVENT_NAMES.has(message.event)) continue;
        let data: unknown;
        try {
          data = JSON.parse(message.data);
        } catch {
          throw new BackendStreamError('backend sent malformed event data');
        }
        if (typeof data !== 'object' || data === null) throw new BackendStreamError('backend sent malformed event data');
        yield { event: message.event, data } as GenerateEvent;
      }
      if (done) {
        finished = true;
        return;
      }
    }
  } finally {
    // Left early (client gone, bad event): cancel the body so the backend sees the request end. After a stop
    // string the lease closes it instead, once the backend has been told it was a stop.
    if (!finished && !ownerCloses()) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}
