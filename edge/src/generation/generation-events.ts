// Backend token-id events -> text events per choice: incremental detokenization, stop strings, logprobs
// kept in step with the text they produced. Shared by the streaming and the non-streaming responses.

import type { GenerateEvent, Usage } from '../../../shared/protocol';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { ChoiceOutput, type OutputEvent } from './choice-output';

export type { OutputEvent, OutputFinishReason } from './choice-output';

export interface GenerationOptions {
  tokenizer: Tokenizer;
  choiceCount: number;
  stop: string[];
  promptTokenCount: number;
  /** Called once every choice has hit a stop string: the caller cancels the backend request. */
  onAllStopped(): void;
  /**
   * The output continues the prompt's text (/v1/completions): a leading "▁" on the first token is a real
   * space there. Chat replies start fresh, so sentencepiece's start-of-text rule (drop it) applies.
   */
  continuesPrompt?: boolean;
  /** Running count of completion token ids received, readable by the caller after an abort. */
  received?: { tokenCount: number };
  /**
   * The [TOOL_CALLS] control id when the request offers tools: what follows it becomes tool_call events
   * (tools/tool-call-stream.ts), text before it stays content. Stop strings apply to that content only.
   */
  toolCallTokenId?: number;
}

export async function* generationEvents(events: AsyncIterable<GenerateEvent>, options: GenerationOptions): AsyncGenerator<OutputEvent> {
  const { tokenizer } = options;
  const skipIds = new Set([tokenizer.bosTokenId, tokenizer.eosTokenId]);
  const rules = { tokenizer, stop: options.stop, continuesPrompt: options.continuesPrompt ?? false, toolCallTokenId: options.toolCallTokenId };
  const choices = Array.from({ length: options.choiceCount }, (_, choice) => new ChoiceOutput(choice, rules));
  const usageFromCounts = (): Usage => ({
    promptTokens: options.promptTokenCount,
    completionTokens: choices.reduce((sum, c) => sum + c.tokenCount, 0),
    cachedTokens: 0,
  });

  for await (const event of events) {
    if (event.event === 'error') {
      yield { type: 'error', message: 'The model backend failed while generating.' };
      return;
    }
    if (event.event === 'end') {
      yield { type: 'usage', usage: sanitizeUsage(event.data.usage, usageFromCounts()) };
      return;
    }
    const choice = choices[event.data.choice];
    if (!choice || choice.finished) continue;
    if (event.event === 'token') {
      const tokenIds = Array.isArray(event.data.tokenIds) ? event.data.tokenIds.filter((id) => Number.isInteger(id)) : [];
      if (options.received) options.received.tokenCount += tokenIds.length;
      const ids = tokenIds.filter((id) => !skipIds.has(id));
      yield* choice.push(ids, tokenIds.length, event.data.logprobs ?? []);
      // Only a stop string ends a choice here; once every choice has one, the edge ends the request itself.
      if (choice.finished && choices.every((c) => c.finished)) {
        options.onAllStopped();
        yield { type: 'usage', usage: usageFromCounts() };
        return;
      }
    } else if (event.event === 'finish') {
      if (event.data.finishReason === 'abort') {
        yield { type: 'error', message: 'The model backend interrupted the generation.' };
        return;
      }
      yield* choice.finish(event.data.finishReason);
    }
  }
  // The body ended without an `end` event: the backend went away mid-stream.
  yield { type: 'error', message: 'The connection to the model backend was lost.' };
}

function sanitizeUsage(usage: Partial<Usage> | undefined, fallback: Usage): Usage {
  const count = (value: unknown, otherwise: number) => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : otherwise);
  return {
    promptTokens: count(usage?.promptTokens, fallback.promptTokens),
    completionTokens: count(usage?.completionTokens, fallback.completionTokens),
    cachedTokens: count(usage?.cachedTokens, 0),
  };
}
