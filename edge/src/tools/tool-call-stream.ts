// The model's tool calls, read as they stream: after [TOOL_CALLS] a v3 model writes
//   [{"name": "get_weather", "arguments": {"city": "Paris"}}, {...}]
// then EOS. Each call is announced (fresh id, type, name) once its name string is complete, then its
// arguments follow as the exact JSON text the model wrote, fragment by fragment: OpenAI's streamed
// tool_calls deltas. The non-streaming answer assembles the same deltas, so both give the same calls.
//
// Text that is not this shape (an unconstrained model may write anything; the backend's grammar prevents
// it) becomes content from the first character that breaks it, minus what already went out as calls.
// Output cut short (max_tokens) keeps what was announced; the finish reason then says "length", and
// `complete` is false. Before any call is announced, nothing is committed, so a failure returns it all as text.

import { newToolCallId } from './tool-call-id';

export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function: { name?: string; arguments: string };
}

export type ToolStreamOutput = { kind: 'call'; delta: ToolCallDelta } | { kind: 'content'; text: string };

type State = 'start' | 'firstCall' | 'call' | 'afterCall' | 'key' | 'keyString' | 'colon' | 'value' | 'afterValue' | 'done' | 'failed';
type Scan = 'more' | 'included' | 'excluded' | 'error';

/** Finds where one JSON value ends (strings, nesting, scalars); JSON.parse checks the text afterwards. */
class ValueScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private scalar = false;
  private started = false;

  feed(c: string): Scan {
    if (!this.started) {
      this.started = true;
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth = 1;
      else if (/[-0-9tfn]/.test(c)) this.scalar = true;
      else return 'error';
      return 'more';
    }
    if (this.scalar) return /[-+.0-9a-zA-Z]/.test(c) ? 'more' : 'excluded';
    if (this.inString) {
      if (this.escaped) this.escaped = false;
      else if (c === '\\') this.escaped = true;
      else if (c === '"') {
        this.inString = false;
        if (this.depth === 0) return 'included';
      }
      return 'more';
    }
    if (c === '"') this.inString = true;
    else if (c === '{' || c === '[') this.depth++;
    else if (c === '}' || c === ']') {
      if (--this.depth === 0) return 'included';
    }
    return 'more';
  }
}

interface CallState {
  /** null until the name string is complete (the call is announced then). */
  name: string | null;
  arguments: string;
}

export class ToolCallStream {
  private text = '';
  private position = 0;
  /** Offset up to which the output already stands for the text. */
  private committed = 0;
  private state: State = 'start';
  private readonly calls: CallState[] = [];
  private readonly sentArguments: number[] = [];
  private keyIndex = 0;
  private key = '';
  private keyStart = 0;
  private keyEscaped = false;
  private valueStart = -1;
  private scanner = new ValueScanner();
  private readonly out: ToolStreamOutput[] = [];

  constructor(private readonly newId: () => string = newToolCallId) {}

  /** Number of calls announced so far. */
  get announced(): number {
    return this.calls.filter((call) => call.name !== null).length;
  }

  push(text: string): ToolStreamOutput[] {
    this.text += text;
    while (this.position < this.text.length && this.state !== 'failed') {
      if (this.step(this.text[this.position])) this.position++;
    }
    if (this.state === 'failed') this.fail();
    this.flushArguments();
    return this.out.splice(0);
  }

  /** The end of the output: any text left over, and whether it held a complete, well-formed list of calls. */
  finish(): { outputs: ToolStreamOutput[]; complete: boolean } {
    this.flushArguments();
    const outputs = this.out.splice(0);
    // Nothing went out as a call (cut short, or an empty list): all of it is text.
    if (this.state !== 'failed' && this.announced === 0 && this.text.trim()) outputs.push({ kind: 'content', text: this.text });
    const complete = this.state === 'done' && this.calls.length > 0 && this.calls.every((call) => isJsonObject(call.arguments));
    return { outputs, complete };
  }

  /** One character in the current state; false when it must be seen again in the next state. */
  private step(c: string): boolean {
    const space = c === ' ' || c === '\n' || c === '\t' || c === '\r';
    switch (this.state) {
      case 'start':
        return space || this.to(c === '[', 'firstCall');
      case 'firstCall':
        if (c === ']') return this.close();
        return space || this.openCall(c);
      case 'call':
        return space || this.openCall(c);
      case 'afterCall':
        if (space) return true;
        if (c === ']') return this.close();
        return this.to(c === ',', 'call');
      case 'key':
        if (space) return true;
        this.keyStart = this.position;
        this.keyEscaped = false;
        return this.to(c === '"', 'keyString');
      case 'keyString':
        if (this.keyEscaped) this.keyEscaped = false;
        else if (c === '\\') this.keyEscaped = true;
        else if (c === '"') return this.endKey();
        return true;
      case 'colon':
        return space || this.to(c === ':', 'value');
      case 'value':
        if (this.valueStart < 0) {
          if (space) return true;
          this.valueStart = this.position;
          if (this.key === 'name' && c !== '"') return this.to(false, 'failed');
        }
        return this.value(c);
      case 'afterValue':
        if (space) return true;
        if (c === ',') return this.to(true, 'key');
        if (c === '}' && this.keyIndex >= 2) {
          this.committed = this.position + 1;
          return this.to(true, 'afterCall');
        }
        return this.to(false, 'failed');
      case 'done':
        return space || this.to(false, 'failed');
      default:
        return true;
    }
  }

  private to(ok: boolean, next: State): boolean {
    this.state = ok ? next : 'failed';
    return true;
  }

  private openCall(c: string): boolean {
    if (c !== '{') return this.to(false, 'failed');
    this.flushArguments(); // the previous call's last fragment goes out before the next call's header
    this.calls.push({ name: null, arguments: '' });
    this.keyIndex = 0;
    return this.to(true, 'key');
  }

  private close(): boolean {
    this.committed = this.position + 1;
    return this.to(true, 'done');
  }

  private endKey(): boolean {
    try {
      this.key = JSON.parse(this.text.slice(this.keyStart, this.position + 1)) as string;
    } catch {
      return this.to(false, 'failed');
    }
    // Mistral's order: "name", then "arguments", then anything else (an "id" some models add is ignored).
    const wanted = ['name', 'arguments'][this.keyIndex];
    if (wanted !== undefined && this.key !== wanted) return this.to(false, 'failed');
    this.scanner = new ValueScanner();
    this.valueStart = -1;
    return this.to(true, 'colon');
  }

  private value(c: string): boolean {
    const scan = this.scanner.feed(c);
    if (scan === 'error') return this.to(false, 'failed');
    const call = this.calls[this.calls.length - 1];
    if (this.key === 'arguments' && scan !== 'excluded') {
      call.arguments += c;
      this.committed = this.position + 1;
    }
    if (scan === 'more') return true;
    const end = scan === 'included' ? this.position + 1 : this.position;
    if (this.key === 'name') this.announce(call, this.text.slice(this.valueStart, end));
    this.keyIndex++;
    if (this.state !== 'failed') this.state = 'afterValue';
    return scan === 'included';
  }

  private announce(call: CallState, literal: string): void {
    try {
      call.name = JSON.parse(literal) as string;
    } catch {
      this.state = 'failed';
      return;
    }
    this.committed = this.position + 1;
    this.out.push({ kind: 'call', delta: { index: this.calls.length - 1, id: this.newId(), type: 'function', function: { name: call.name, arguments: '' } } });
  }

  /** Argument text scanned since the last output goes out as one fragment. */
  private flushArguments(): void {
    const index = this.calls.length - 1;
    const call = this.calls[index];
    if (!call || call.name === null) return;
    const sent = this.sentArguments[index] ?? 0;
    if (call.arguments.length === sent) return;
    this.out.push({ kind: 'call', delta: { index, function: { arguments: call.arguments.slice(sent) } } });
    this.sentArguments[index] = call.arguments.length;
  }

  /** From the first character that breaks the shape on, the rest is text. */
  private fail(): void {
    this.flushArguments();
    const rest = this.text.slice(this.committed);
    this.committed = this.text.length;
    this.position = this.text.length;
    if (rest) this.out.push({ kind: 'content', text: rest });
  }
}

function isJsonObject(text: string): boolean {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
