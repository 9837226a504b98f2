// One choice's output: token ids in, text and tool-call events out. A choice writes content until it writes
// [TOOL_CALLS] (when the request offers tools); from then on its output is tool calls. Each mode is one object.

import type { FinishReason, SampledLogprob, Usage } from '../../../shared/protocol';
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

/** What every choice of one request shares. */
export interface ChoiceRules {
  tokenizer: Tokenizer;
  stop: string[];
  /** The output continues the prompt's text: a leading "▁" on the first token is a real space. */
  continuesPrompt: boolean;
  /** The [TOOL_CALLS] control id when the request offers tools. */
  toolCallTokenId?: number;
}

/** Text so far, with stop strings cut: the decoder feeds the matcher, logprobs wait for the text they made. */
class ContentMode {
  private readonly decoder: IncrementalDecoder;
  private readonly matcher: StopMatcher;
  private readonly pendingLogprobs: SampledLogprob[] = [];

  constructor(
    private readonly choice: number,
    private readonly rules: ChoiceRules,
  ) {
    this.decoder = new IncrementalDecoder(rules.tokenizer);
    // Any plain piece ends the decoder's start-of-text state; its own text is discarded.
    if (rules.continuesPrompt) this.decoder.push(rules.tokenizer.encode('a'));
    this.matcher = new StopMatcher(rules.stop);
  }

  /**
   * `toolIds` is set when these ids wrote [TOOL_CALLS]: the ids after it, for the tool-call mode. The content
   * before it is released whole (what the decoder and the stop matcher still held), unless it hit a stop.
   */
  push(ids: number[], logprobs: SampledLogprob[]): { events: OutputEvent[]; stopped: boolean; toolIds: number[] | null } {
    this.pendingLogprobs.push(...logprobs);
    const callAt = this.rules.toolCallTokenId === undefined ? -1 : ids.indexOf(this.rules.toolCallTokenId);
    let pushed = this.matcher.push(this.decoder.push(callAt < 0 ? ids : ids.slice(0, callAt)));
    if (callAt >= 0 && !pushed.stopped) {
      const tail = this.matcher.push(this.decoder.flush());
      pushed = { text: pushed.text + tail.text + (tail.stopped ? '' : this.matcher.flush()), stopped: tail.stopped };
    }
    // Pending logprobs belong to the tokens that made the released text (and a stop string, which is cut).
    const events: OutputEvent[] = pushed.text ? [this.delta(pushed.text, this.pendingLogprobs.splice(0))] : [];
    if (pushed.stopped) return { events: [...events, this.finished('stop')], stopped: true, toolIds: null };
    return { events, stopped: false, toolIds: callAt < 0 ? null : ids.slice(callAt + 1) };
  }

  finish(reason: FinishReason): OutputEvent[] {
    const tail = this.matcher.push(this.decoder.flush());
    const text = tail.stopped ? tail.text : tail.text + this.matcher.flush();
    const logprobs = tail.stopped ? [] : this.pendingLogprobs.splice(0);
    const events: OutputEvent[] = text || logprobs.length > 0 ? [this.delta(text, logprobs)] : [];
    return [...events, this.finished(tail.stopped || reason !== 'length' ? 'stop' : 'length')];
  }

  private delta(text: string, logprobs: SampledLogprob[]): OutputEvent {
    return { type: 'delta', choice: this.choice, text, logprobs };
  }

  private finished(finishReason: OutputFinishReason): OutputEvent {
    return { type: 'finish', choice: this.choice, finishReason };
  }
}

/** After [TOOL_CALLS]: the text becomes tool-call deltas (logprobs describe content tokens only). */
class ToolCallMode {
  private readonly decoder: IncrementalDecoder;
  private readonly stream = new ToolCallStream();

  constructor(
    private readonly choice: number,
    tokenizer: Tokenizer,
  ) {
    this.decoder = new IncrementalDecoder(tokenizer);
  }

  push(ids: number[]): OutputEvent[] {
    return this.events(this.stream.push(this.decoder.push(ids)));
  }

  finish(reason: FinishReason): OutputEvent[] {
    const events = this.events(this.stream.push(this.decoder.flush()));
    const end = this.stream.finish();
    const finishReason = reason === 'length' ? 'length' : end.complete ? 'tool_calls' : 'stop';
    return [...events, ...this.events(end.outputs), { type: 'finish', choice: this.choice, finishReason }];
  }

  private events(outputs: ToolStreamOutput[]): OutputEvent[] {
    return outputs.map((out) =>
      out.kind === 'call' ? { type: 'tool_call', choice: this.choice, delta: out.delta } : { type: 'delta', choice: this.choice, text: out.text, logprobs: [] },
    );
  }
}

/** One choice: its mode, its token count, and whether it has ended (after which it takes nothing). */
export class ChoiceOutput {
  tokenCount = 0;
  finished = false;
  private mode: ContentMode | ToolCallMode;

  constructor(
    private readonly choice: number,
    private readonly rules: ChoiceRules,
  ) {
    this.mode = new ContentMode(choice, rules);
  }

  /** `ids` without BOS/EOS; `counted` is how many ids the backend sent (what the choice is charged). */
  push(ids: number[], counted: number, logprobs: SampledLogprob[]): OutputEvent[] {
    this.tokenCount += counted;
    if (this.mode instanceof ToolCallMode) return this.mode.push(ids);
    const content = this.mode.push(ids, logprobs);
    if (content.stopped) this.finished = true;
    if (!content.toolIds) return content.events;
    this.mode = new ToolCallMode(this.choice, this.rules.tokenizer);
    return [...content.events, ...this.mode.push(content.toolIds)];
  }

  finish(reason: FinishReason): OutputEvent[] {
    this.finished = true;
    return this.mode.finish(reason);
  }
}
