import { describe, expect, it } from 'vitest';
import type { SampledLogprob } from '../../../shared/protocol';
import { referenceTokenizer } from '../tokenizer/test-fixtures';
import { toolControlIds } from '../tools/tool-prompt';
import { ChoiceOutput, type OutputEvent } from './choice-output';

const tokenizer = referenceTokenizer('v3');
const TOOL_CALLS = toolControlIds(tokenizer)!.toolCalls;
const ids = (text: string) => tokenizer.encode(text);
const logprob = (tokenId: number): SampledLogprob => ({ tokenId, logprob: -1, top: [] });

function choice(stop: string[] = [], continuesPrompt = false): ChoiceOutput {
  return new ChoiceOutput(0, { tokenizer, stop, continuesPrompt, toolCallTokenId: TOOL_CALLS });
}

const text = (events: OutputEvent[]) => events.map((e) => (e.type === 'delta' ? e.text : '')).join('');
const finishOf = (events: OutputEvent[]) => events.find((e) => e.type === 'finish');

describe('one choice', () => {
  it('releases all content before [TOOL_CALLS] (also a stop string prefix it held back), then streams tool calls', () => {
    const output = choice(['Hello!!']);
    const call = ids('[{"name": "get_weather", "arguments": {"city": "Paris"}}]');
    const content = ids('Hello!');
    const events = output.push([...content, TOOL_CALLS, ...call], content.length + 1 + call.length, [logprob(content[0])]);
    expect(text(events)).toBe('Hello!');
    expect(events[0]).toMatchObject({ type: 'delta', logprobs: [logprob(content[0])] });
    const end = output.finish('stop');
    const calls = [...events, ...end].filter((e) => e.type === 'tool_call');
    expect(calls[0]).toMatchObject({ delta: { index: 0, function: { name: 'get_weather' } } });
    expect(calls.map((e) => (e.type === 'tool_call' ? e.delta.function.arguments : '')).join('')).toBe('{"city": "Paris"}');
    expect(finishOf(end)).toMatchObject({ finishReason: 'tool_calls' });
    expect(output.tokenCount).toBe(content.length + 1 + call.length);
  });

  it('ends on a stop string in the content, and [TOOL_CALLS] after it never starts tool calls', () => {
    const output = choice(['END']);
    const events = output.push([...ids('done END'), TOOL_CALLS, ...ids('[{"name": "x"')], 9, []);
    expect(text(events)).toBe('done ');
    expect(finishOf(events)).toMatchObject({ finishReason: 'stop' });
    expect(events.some((e) => e.type === 'tool_call')).toBe(false);
    expect(output.finished).toBe(true);
  });

  it('finishes a cut-off tool call as length, and an unparseable one as stop', () => {
    const cut = choice();
    cut.push([TOOL_CALLS, ...ids('[{"name": "get_weather", "argu')], 1, []);
    expect(finishOf(cut.finish('length'))).toMatchObject({ finishReason: 'length' });
    const broken = choice();
    broken.push([TOOL_CALLS, ...ids('not json at all')], 1, []);
    expect(finishOf(broken.finish('stop'))).toMatchObject({ finishReason: 'stop' });
  });

  it('keeps the leading space of a continuation and drops it from a fresh reply', () => {
    const word = ids('world'); // "▁world"
    const continuation = choice([], true);
    expect(text([...continuation.push(word, word.length, []), ...continuation.finish('stop')])).toBe(' world');
    const fresh = choice();
    expect(text([...fresh.push(word, word.length, []), ...fresh.finish('stop')])).toBe('world');
  });
});
