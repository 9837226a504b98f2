// ToolCallStream: the calls assembled from its deltas equal JSON.parse of the whole text, however the text is
// split; text that is not a call list comes back as content; a cut-off list is kept but not `complete`.

import { describe, expect, it } from 'vitest';
import { addToolCallDelta, type ToolCallResult } from '../generation/generation-plan';
import { newToolCallId } from './tool-call-id';
import { ToolCallStream, type ToolStreamOutput } from './tool-call-stream';

function run(pieces: string[]): { calls: ToolCallResult[]; content: string; complete: boolean; outputs: ToolStreamOutput[] } {
  let n = 0;
  const stream = new ToolCallStream(() => `id${String(++n).padStart(7, '0')}`);
  const outputs = pieces.flatMap((piece) => stream.push(piece));
  const end = stream.finish();
  outputs.push(...end.outputs);
  const calls: ToolCallResult[] = [];
  let content = '';
  for (const out of outputs) {
    if (out.kind === 'call') addToolCallDelta(calls, out.delta);
    else content += out.text;
  }
  return { calls, content, complete: end.complete, outputs };
}

/** Every split of `text` into two pieces, plus one character at a time. */
function splits(text: string): string[][] {
  const all = [[text], Array.from(text)];
  for (let i = 1; i < text.length; i++) all.push([text.slice(0, i), text.slice(i)]);
  return all;
}

const TWO_CALLS =
  ' [{"name": "get_weather", "arguments": {"city": "Paris, \\"FR\\"", "days": [1, {"x": "]}"}]}}, {"name": "send_email", "arguments": {}, "id": "abcdefghi"}]\n';

describe('ToolCallStream', () => {
  it('assembles the calls JSON.parse finds, for every way the text arrives', () => {
    const expected = (JSON.parse(TWO_CALLS) as { name: string; arguments: unknown }[]).map((call) => ({ name: call.name, arguments: call.arguments }));
    for (const pieces of splits(TWO_CALLS)) {
      const { calls, content, complete } = run(pieces);
      expect(content).toBe('');
      expect(complete).toBe(true);
      expect(calls.map((call) => ({ name: call.name, arguments: JSON.parse(call.arguments) as unknown }))).toEqual(expected);
      expect(calls.map((call) => call.id)).toEqual(['id0000001', 'id0000002']);
    }
  });

  it('announces a call (id, type, name) before any of its arguments, once per call', () => {
    const { outputs } = run(Array.from(TWO_CALLS));
    const deltas = outputs.flatMap((out) => (out.kind === 'call' ? [out.delta] : []));
    const headers = deltas.filter((delta) => delta.id !== undefined);
    expect(headers.map((h) => [h.index, h.type, h.function.name])).toEqual([
      [0, 'function', 'get_weather'],
      [1, 'function', 'send_email'],
    ]);
    const firstArgsOf1 = deltas.findIndex((d) => d.index === 1 && d.id === undefined);
    expect(deltas.indexOf(headers[1])).toBeLessThan(firstArgsOf1 === -1 ? Infinity : firstArgsOf1);
    expect(deltas.filter((d) => d.id === undefined).every((d) => d.function.name === undefined)).toBe(true);
  });

  it('returns text that is no call list as content, whole', () => {
    for (const text of ['Sure! Here is the answer.', '{"name": "f"}', '[{"arguments": {}, "name": "f"}]', '[]', '[{"name": 5}]']) {
      for (const pieces of splits(text)) {
        const { calls, content, complete } = run(pieces);
        expect(calls, text).toEqual([]);
        expect(content, text).toBe(text);
        expect(complete).toBe(false);
      }
    }
  });

  it('keeps a call cut off in its arguments (not complete) and drops a cut-off next header', () => {
    const { calls, content, complete } = run(['[{"name": "f", "arguments": {"a": "par']);
    expect(calls).toEqual([{ id: 'id0000001', name: 'f', arguments: '{"a": "par' }]);
    expect(content).toBe('');
    expect(complete).toBe(false);
    const second = run(['[{"name": "f", "arguments": {"a": 1}}, {"na']);
    expect(second.calls.map((c) => c.arguments)).toEqual(['{"a": 1}']);
    expect(second.content).toBe('');
    expect(second.complete).toBe(false);
  });

  it('turns what follows a broken list into content after the calls already sent', () => {
    const { calls, content, complete } = run(['[{"name": "f", "arguments": {"a": 1}} oops, never mind']);
    expect(calls.map((c) => [c.name, c.arguments])).toEqual([['f', '{"a": 1}']]);
    expect(content).toBe(' oops, never mind');
    expect(complete).toBe(false);
    expect(run(['[{"name": "f", "arguments": {"a": 1}}] and more']).content).toBe(' and more');
  });

  it('makes 9-character alphanumeric ids', () => {
    const ids = new Set(Array.from({ length: 200 }, newToolCallId));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(id).toMatch(/^[a-zA-Z0-9]{9}$/);
  });
});
