import { describe, expect, it } from 'vitest';
import { encodeSse, encodeSseComment, SseParser } from './sse';

describe('SseParser', () => {
  it('parses named events split at every possible byte boundary', () => {
    const wire = encodeSseComment('ping') + encodeSse('{"a":1}', 'token') + encodeSse('line1\nline2') + encodeSse('[DONE]');
    for (let cut = 0; cut <= wire.length; cut++) {
      const parser = new SseParser();
      const messages = [...parser.push(wire.slice(0, cut)), ...parser.push(wire.slice(cut))];
      expect(messages).toEqual([
        { event: 'token', data: '{"a":1}' },
        { event: 'message', data: 'line1\nline2' },
        { event: 'message', data: '[DONE]' },
      ]);
    }
  });

  it('accepts CRLF and CR line ends', () => {
    const parser = new SseParser();
    expect(parser.push('event: end\r\ndata: x\r\n\r')).toEqual([]);
    expect(parser.push('\ndata: y\r\n\r\n')).toEqual([
      { event: 'end', data: 'x' },
      { event: 'message', data: 'y' },
    ]);
  });
});
