// Backend token-id events -> text events per choice: incremental detokenization, stop strings, logprobs
// kept in step with the text they produced. Shared by the streaming and the non-streaming responses.

import type { FinishReason, GenerateEvent, SampledLogprob, Usage } from '../../../shared/protocol';
import { IncrementalDecoder } from '../tokenizer/incremental-decoder';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { StopMatcher } from './stop-matcher';

export type OutputEvent =
  | { type: 'delta'; choice: number; text: string; logprobs: SampledLogprob[] }
  | { type: 'finish'; choice: number; finishReason: 'stop' | 'length' }
  | { type: 'usage'; usage: Usage }
  | { type: 'error'; message: string };

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
}

interface ChoiceState {
  decoder: IncrementalDecoder;
  matcher: StopMatcher;
  pendingLogprobs: SampledLogprob[];
  tokenCount: number;
  finished: boolean;
}

export class BackendInterrupted extends Error {}

export async function* generationEvents(events: AsyncIterable<GenerateEvent>, options: GenerationOptions): AsyncGenerator<OutputEvent> {
  const { tokenizer } = options;
  const skipIds = new Set([tokenizer.bosTokenId, tokenizer.eosTokenId]);
  const newDecoder = () => {
    const decoder = new IncrementalDecoder(tokenizer);
    // Any plain piece ends the decoder's start-of-text state; its own text is discarded.
    if (options.continuesPrompt) decoder.push(tokenizer.encode('a'));
    return decoder;
  };
  const choices: ChoiceState[] = Array.from({ length: options.choiceCount }, () => ({
    decoder: newDecoder(),
    matcher: new StopMatcher(options.stop),
    pendingLogprobs: [],
    tokenCount: 0,
    finished: false,
  }));
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
    const state = choices[event.data.choice];
    if (!state || state.finished) continue;
    if (event.event === 'token') {
      const tokenIds = Array.isArray(event.data.tokenIds) ? event.data.tokenIds.filter((id) => Number.isInteger(id)) : [];
      state.tokenCount += tokenIds.length;
      if (options.received) options.received.tokenCount += tokenIds.length;
      if (event.data.logprobs) state.pendingLogprobs.push(...event.data.logprobs);
      const pushed = state.matcher.push(state.decoder.push(tokenIds.filter((id) => !skipIds.has(id))));
      if (pushed.stopped) {
        state.finished = true;
        // Pending logprobs belong to tokens that made the released text (and the stop string, which is cut).
        if (pushed.text) yield { type: 'delta', choice: event.data.choice, text: pushed.text, logprobs: state.pendingLogprobs.splice(0) };
        yield { type: 'finish', choice: event.data.choice, finishReason: 'stop' };
        if (choices.every((c) => c.finished)) {
          options.onAllStopped();
          yield { type: 'usage', usage: usageFromCounts() };
          return;
        }
      } else if (pushed.text) {
        yield { type: 'delta', choice: event.data.choice, text: pushed.text, logprobs: state.pendingLogprobs.splice(0) };
      }
    } else if (event.event === 'finish') {
      if (event.data.finishReason === 'abort') {
        yield { type: 'error', message: 'The model backend interrupted the generation.' };
        return;
      }
      state.finished = true;
      const tail = state.matcher.push(state.decoder.flush());
      const text = tail.stopped ? tail.text : tail.text + state.matcher.flush();
      const logprobs = tail.stopped ? [] : state.pendingLogprobs.splice(0);
      if (text || logprobs.length > 0) yield { type: 'delta', choice: event.data.choice, text, logprobs };
      yield { type: 'finish', choice: event.data.choice, finishReason: tail.stopped ? 'stop' : mapFinish(event.data.finishReason) };
    }
  }
  // The body ended without an `end` event: the backend went away mid-stream.
  yield { type: 'error', message: 'The connection to the model backend was lost.' };
}

function mapFinish(reason: FinishReason): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

function sanitizeUsage(usage: Partial<Usage> | undefined, fallback: Usage): Usage {
  const count = (value: unknown, otherwise: number) => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : otherwise);
  return {
    promptTokens: count(usage?.promptTokens, fallback.promptTokens),
    completionTokens: count(usage?.completionTokens, fallback.completionTokens),
    cachedTokens: count(usage?.cachedTokens, 0),
  };
}
