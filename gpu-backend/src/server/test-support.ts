// Test helpers shared by the server tests: SSE reading, a fake-model greedy reference, a step gate.

import type { GenerateEvent } from '../../../shared/protocol';
import { SseParser } from '../../../shared/sse';
import { fakeLogits } from './fake-engine';
import { argmax } from './logits-processors';

/** Reads a whole SSE body into typed events (comments such as heartbeats are skipped by the parser). */
export async function readEvents(response: Response): Promise<GenerateEvent[]> {
  const parser = new SseParser();
  const text = await response.text();
  return parser.push(text).map((message) => ({ event: message.event, data: JSON.parse(message.data) }) as GenerateEvent);
}

/** Greedy decoding straight from the fake model: the independent reference for served output. */
export function fakeGreedy(prompt: number[], maxTokens: number, vocabSize: number): number[] {
  const history = prompt.slice();
  const output: number[] = [];
  for (let i = 0; i < maxTokens; i++) {
    const next = argmax(fakeLogits(history, vocabSize));
    output.push(next);
    history.push(next);
  }
  return output;
}

/** Holds engine steps while closed: pass `gate.wait` as FakeEngine's beforeStep. */
export class StepGate {
  private blocked: Promise<void> | null = null;
  private release: (() => void) | null = null;

  readonly wait = (): Promise<void> => this.blocked ?? Promise.resolve();

  close(): void {
    this.blocked ??= new Promise((resolve) => (this.release = resolve));
  }

  open(): void {
    this.release?.();
    this.blocked = null;
    this.release = null;
  }
}
