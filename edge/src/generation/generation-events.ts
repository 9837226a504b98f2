// Backend token-id events -> text events per choice: incremental detokenization, stop strings, logprobs
// kept in step with the text they produced. Shared by the streaming and the non-streaming responses.

import type { FinishReason, GenerateEvent, SampledLogprob, Usage } from '../../../shared/protocol';
import { IncrementalDecoder } from '../tokenizer/incremental-decoder';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { ToolCallStream, type ToolCallDelta, type ToolStreamOutput } from '../tools/tool-call-stream';
import { StopMatcher } from './stop-matcher';

export type OutputFinishReason = 'stop' | 'length' | 'tool_calls';

export type OutputEvent =
  | { type: 'delta'; choice: number; text: string; logprobs: SampledLogprob[] }
  | { type: 'tool_call'; choice: number; delta: ToolCallDelta }
  | { type: 'finish'; choice: number; finishReason: OutputFinishReason }
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
  /**
   * The [TOOL_CALLS] control id when the request offers tools: what follows it becomes tool_call events
   * (tools/tool-call-stream.ts), text before it stays content. Stop strings apply to that content only.
   */
  toolCallTokenId?: number;
}

interface ChoiceState {
  decoder: IncrementalDecoder;
  matcher: StopMatcher;
  pendingLogprobs: SampledLogprob[];
  tokenCount: number;
  finished: boolean;
  /** Set once the choice has written [TOOL_CALLS]. */
  tools: { stream: ToolCallStream; decoder: IncrementalDecoder } | null;
}

function toolEvents(choice: number, outputs: ToolStreamOutput[]): OutputEvent[] {
  return outputs.map((out) =>
    out.kind === 'call' ? { type: 'tool_call', choice, delta: out.delta } : { type: 'delta', choice, text: out.text, logprobs: [] },
  );
}

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
    tools: null,
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
      let contentIds = tokenIds.filter((id) => !skipIds.has(id));
      let toolIds: number[] | null = null;
      const callAt = state.tools ? 0 : options.toolCallTokenId === undefined ? -1 : contentIds.indexOf(options.toolCallTokenId);
      if (callAt >= 0) {
        toolIds = contentIds.slice(state.tools ? 0 : callAt + 1);
        contentIds = contentIds.slice(0, state.tools ? 0 : callAt);
      }
      let pushed = state.tools ? { text: '', stopped: false } : state.matcher.push(state.decoder.push(contentIds));
      if (toolIds && !state.tools && !pushed.stopped) {
        // The text before [TOOL_CALLS] is content: release what the decoder and the stop matcher still hold.
        const tail = state.matcher.push(state.decoder.flush());
        pushed = { text: pushed.text + tail.text + (tail.stopped ? '' : state.matcher.flush()), stopped: tail.stopped };
        if (!pushed.stopped) state.tools = { stream: new ToolCallStream(), decoder: new IncrementalDecoder(tokenizer) };
      }
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
      } else {
        if (pushed.text) yield { type: 'delta', choice: event.data.choice, text: pushed.text, logprobs: state.pendingLogprobs.splice(0) };
        if (state.tools && toolIds) {
          state.pendingLogprobs.length = 0; // logprobs describe content tokens only
          yield* toolEvents(event.data.choice, state.tools.stream.push(state.tools.decoder.push(toolIds)));
        }
      }
    } else if (event.event === 'finish') {
      if (event.data.finishReason === 'abort') {
        yield { type: 'error', message: 'The model backend interrupted the generation.' };
        return;
      }
      state.finished = true;
      if (state.tools) {
        const { stream, decoder } = state.tools;
        yield* toolEvents(event.data.choice, stream.push(decoder.flush()));
        const end = stream.finish();
        yield* toolEvents(event.data.choice, end.outputs);
        const reason = event.data.finishReason === 'length' ? 'length' : end.complete ? 'tool_calls' : 'stop';
        yield { type: 'finish', choice: event.data.choice, finishReason: reason };
        continue;
      }
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
