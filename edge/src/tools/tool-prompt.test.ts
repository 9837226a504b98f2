// v3 function-calling prompts against mistral-common's own samples (../shared/fixtures/tokenizer/tool-samples):
// encodeChat directly and POST /tokenize with messages + tools must give the published ids; v1 refuses tools.

import { afterEach, describe, expect, it } from 'vitest';
import { chatMessageSchema } from '../api/request-schemas';
import { toChatMessages } from '../prompt/request-prompt';
import { callEdge, createKey, bearer } from '../test-support/edge-harness';
import { encodeChat, TemplateError } from '../tokenizer/chat-template';
import { overrideDefaultTokenizer } from '../tokenizer/default-tokenizer';
import { referenceTokenizer, toolSamples } from '../tokenizer/test-fixtures';
import { toolControlIds } from './tool-prompt';
import { planTools } from './tool-request';
import { toolsSchema } from './tool-request-schemas';

afterEach(() => overrideDefaultTokenizer(undefined));

describe('v3 tool prompts (mistral-common samples)', () => {
  it('finds the tool control ids in v3 and none in v1', () => {
    expect(toolControlIds(referenceTokenizer('v3'))).toEqual({ toolCalls: 5, availableTools: 6, endAvailableTools: 7, toolResults: 8, endToolResults: 9 });
    expect(toolControlIds(referenceTokenizer('v1'))).toBeNull();
  });

  it('reproduces all six samples through the chat template', () => {
    const v3 = referenceTokenizer('v3');
    const samples = toolSamples();
    expect(samples.map((s) => s.name)).toHaveLength(6);
    for (const { name, sample, tokens } of samples) {
      const messages = toChatMessages(sample.messages.map((m) => chatMessageSchema.parse(m)));
      const { tools } = planTools({ tools: toolsSchema.parse(sample.tools) }, v3);
      expect(encodeChat(v3, messages, { tools }).tokenIds, name).toEqual(tokens.tokens);
    }
  });

  it('reproduces all six samples through POST /tokenize with messages + tools', async () => {
    overrideDefaultTokenizer(referenceTokenizer('v3'));
    const { secret } = await createKey();
    for (const { name, sample, tokens } of toolSamples()) {
      const { response } = await callEdge('/tokenize', { method: 'POST', headers: bearer(secret), json: { messages: sample.messages, tools: sample.tools } });
      expect(response.status, name).toBe(200);
      expect(((await response.json()) as { tokens: number[] }).tokens, name).toEqual(tokens.tokens);
    }
  });

  it('refuses tools, tool calls and tool results on a v1 tokenizer with a 400 that says so', async () => {
    const { secret } = await createKey();
    const sample = toolSamples().find((s) => s.name === 'get_weather_full')!.sample;
    const { response } = await callEdge('/tokenize', { method: 'POST', headers: bearer(secret), json: { messages: sample.messages, tools: sample.tools } });
    expect(response.status).toBe(400);
    const { error } = (await response.json()) as { error: { param: string; message: string } };
    expect(error.param).toBe('tools');
    expect(error.message).toContain('no tool-call tokens');
    const history = toChatMessages(sample.messages.map((m) => chatMessageSchema.parse(m)));
    const refusal = (() => {
      try {
        encodeChat(referenceTokenizer('v1'), history);
      } catch (e) {
        return e as TemplateError;
      }
    })();
    expect(refusal).toBeInstanceOf(TemplateError);
    expect(refusal!.param).toBe('messages[5].tool_calls');
  });

  it('orders turns as mistral-common does and names the message that breaks it', () => {
    const v3 = referenceTokenizer('v3');
    const call = { id: 'abcDEF123', name: 'f', arguments: '{}' };
    const bad = (messages: Parameters<typeof encodeChat>[1]) => {
      try {
        encodeChat(v3, messages);
      } catch (e) {
        return (e as TemplateError).param;
      }
      return 'accepted';
    };
    expect(
      bad([
        { role: 'user', content: 'q' },
        { role: 'tool', content: '1', toolCallId: 'abcDEF123' },
      ]),
    ).toBe('messages[1].role');
    expect(
      bad([
        { role: 'user', content: 'q' },
        { role: 'assistant', content: '', toolCalls: [call] },
        { role: 'tool', content: '1', toolCallId: 'zzzzzzzzz' },
      ]),
    ).toBe('messages[2].tool_call_id');
    expect(
      bad([
        { role: 'user', content: 'q' },
        { role: 'assistant', content: '', toolCalls: [call] },
        { role: 'tool', content: '1', toolCallId: 'abcDEF123' },
      ]),
    ).toBe('accepted');
    expect(
      bad([
        { role: 'user', content: 'q' },
        { role: 'assistant', content: '', toolCalls: [call] },
      ]),
    ).toBe('messages[1].role');
  });
});
