// Server-Sent Events framing used on both hops: edge <- backend (named events) and client <- edge (data-only).
// Pure string handling; no runtime APIs.

/** Response headers of an SSE stream, on both hops. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  // nginx and friends buffer responses by default; an SSE stream must reach the client as it is written.
  'x-accel-buffering': 'no',
};

export interface SseMessage {
  /** `event:` field; "message" when absent, as browsers do. */
  event: string;
  data: string;
}

/** One SSE message; multi-line data becomes several `data:` lines, as the spec requires. */
export function encodeSse(data: string, event?: string): string {
  const head = event ? `event: ${event}\n` : '';
  return (
    head +
    data
      .split('\n')
      .map((line) => `data: ${line}`)
      .join('\n') +
    '\n\n'
  );
}

/** A comment line: ignored by parsers, keeps proxies and idle timers from closing the stream. */
export function encodeSseComment(text: string): string {
  return `: ${text}\n\n`;
}

/**
 * Incremental parser: feed decoded text chunks as they arrive, get complete messages back.
 * Handles \n, \r\n and \r line ends split anywhere across chunks; comments are skipped.
 */
export class SseParser {
  private buffer = '';
  private event = '';
  private dataLines: string[] = [];

  push(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const messages: SseMessage[] = [];
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone \r at the very end may be the first half of \r\n: wait for more input.
      if (match[0] === '\r' && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const message = this.takeLine(line);
      if (message) messages.push(message);
    }
    return messages;
  }

  private takeLine(line: string): SseMessage | null {
    if (line === '') {
      if (this.dataLines.length === 0) {
        this.event = '';
        return null;
      }
      const message = { event: this.event || 'message', data: this.dataLines.join('\n') };
      this.event = '';
      this.dataLines = [];
      return message;
    }
    if (line.startsWith(':')) return null;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.event = value;
    else if (field === 'data') this.dataLines.push(value);
    return null;
  }
}
