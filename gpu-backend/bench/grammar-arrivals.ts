// `npm run bench:grammar -- --arrivals`: what new grammars cost the streams already running. The real app,
// grammar thread(s) and engine thread (the fake engine in a worker, each step blocking its thread like
// session.run) over the Mistral v1 vocabulary; 8 streams decode, then 8 requests with never-seen schemas
// arrive at once. Prints the worst and median inter-token gap of the running streams while the new ones
// are prepared, against the same streams' gaps before they arrived. Asserts nothing.

import { rm } from 'node:fs/promises';
import { createBackendApp } from '../src/server/app';
import { GenerationClient } from '../src/server/generation-client';
import { GrammarChecker } from '../src/server/grammar/grammar-checker';
import { SAMPLE_SCHEMAS } from '../src/server/grammar/sample-schemas';
import { vocabularyFolder } from '../src/server/grammar/test-vocabularies';
import { percentile } from '../../shared/stats';

export interface ArrivalsOptions {
  stepMillis: number;
  running: number;
  arriving: number;
  rounds: number;
}

type Generate = (body: Record<string, unknown>) => Promise<Response>;

const ms = (value: number) => `${value.toFixed(1)} ms`;

/** A long-running constrained answer: one free string property, so the fake model rarely closes it. */
const RUNNING_SCHEMA = { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] };

/** The sample schemas, each made new (never compiled before) by one extra property named after `nonce`. */
function newSchema(index: number, nonce: string): Record<string, unknown> {
  const samples = Object.values(SAMPLE_SCHEMAS);
  const base = samples[index % samples.length] as { properties?: Record<string, unknown>; type?: string };
  if (base.type !== 'object') return { type: 'object', properties: { [`item_${nonce}`]: base }, required: [`item_${nonce}`] };
  return { ...base, properties: { ...base.properties, [`extra_${nonce}`]: { type: 'boolean' } } };
}

/** Reads an SSE stream of token events, recording when each arrived; resolves at the stream's end. */
async function readStream(response: Response, times: number[]): Promise<void> {
  if (response.status !== 200) throw new Error(`generate answered ${response.status}: ${await response.text()}`);
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    const text = decoder.decode(value, { stream: true });
    const now = performance.now();
    for (const _ of text.matchAll(/^event: token$/gm)) times.push(now);
  }
}

async function round(generate: Generate, options: ArrivalsOptions, runningGrammar: boolean, nonce: string) {
  const streams = Array.from({ length: options.running }, (_, index) => {
    const times: number[] = [];
    const body = {
      requestId: `run-${nonce}-${index}`,
      tokenIds: [1, 100 + index, 200],
      stream: true,
      sampling: { maxTokens: 3000, seed: index, ignoreEos: true },
      ...(runningGrammar && { grammar: { type: 'json_schema', schema: RUNNING_SCHEMA } }),
    };
    const controller = new AbortController();
    const done = generate({ ...body, signal: controller.signal }).then((response) => readStream(response, times));
    done.catch((error: Error) => error.name !== 'AbortError' && console.error(`running stream ${index}: ${error.message}`));
    return { times, done, controller };
  });
  // Steady state first: every running stream has 20 tokens.
  const deadline = performance.now() + 60_000;
  while (streams.some((stream) => stream.times.length < 20)) {
    if (performance.now() > deadline) throw new Error('the running streams did not reach 20 tokens in 60 s');
    await new Promise((resolve) => setTimeout(resolve, options.stepMillis));
  }
  const arrived = performance.now();
  const firstTokens = await Promise.all(
    Array.from({ length: options.arriving }, async (_, index) => {
      const times: number[] = [];
      const response = await generate({
        requestId: `new-${nonce}-${index}`,
        tokenIds: [1, 300 + index, 400],
        stream: true,
        sampling: { maxTokens: 4, seed: index },
        grammar: { type: 'json_schema', schema: newSchema(index, `${nonce}_${index}`) },
      });
      await readStream(response, times);
      return times[0] - arrived;
    }),
  );
  // Gaps are attributed by the token that ends them: before the arrivals, and from then until 5 steps after
  // the last new request's first token.
  const until = arrived + Math.max(...firstTokens) + 5 * options.stepMillis;
  while (performance.now() < until) await new Promise((resolve) => setTimeout(resolve, options.stepMillis));
  for (const stream of streams) stream.controller.abort();
  const before: number[] = [];
  const during: number[] = [];
  for (const { times } of streams) {
    for (let i = 1; i < times.length; i++) {
      if (times[i] <= arrived) before.push(times[i] - times[i - 1]);
      else if (times[i] <= until) during.push(times[i] - times[i - 1]);
    }
  }
  return { before, during, firstTokens };
}

export async function benchArrivals(options: ArrivalsOptions): Promise<void> {
  const folder = await vocabularyFolder('bench-arrivals');
  const client = GenerationClient.inWorker({
    engine: {
      kind: 'fake',
      options: { vocabSize: 32000, stepMillis: options.stepMillis, maxSequences: options.running + options.arriving, maxModelLen: 4096 },
    },
    vocabularyDir: folder,
    limits: { prefixCacheSize: 0 },
  });
  const checker = new GrammarChecker({ modelDir: folder });
  try {
    checker.warm();
    await client.whenReady();
    const app = createBackendApp({ client, grammarChecker: checker });
    const generate: Generate = async ({ signal, ...body }) =>
      app.request('/v1/generate', { method: 'POST', body: JSON.stringify(body), signal: signal as AbortSignal | undefined });
    console.log(
      `arrivals: ${options.running} streams decode (fake engine, ${options.stepMillis} ms steps, v1 vocabulary), ` +
        `${options.arriving} requests with new schemas arrive at once; ${options.rounds} rounds each`,
    );
    console.log('  running streams   gap before: median / max   gap while new arrive: median / p99 / max   new first token: median / max');
    // Running streams with a grammar are not measured yet: the fake model closes RUNNING_SCHEMA's answer before
    // 20 tokens, so those streams never reach the steady state.
    for (const runningGrammar of [false]) {
      const rounds = [];
      for (let index = 0; index < options.rounds + 1; index++)
        rounds.push(await round(generate, options, runningGrammar, `${runningGrammar ? 'g' : 'u'}${index}`));
      // The first round warms the running schema's compile and the HTTP path.
      const measured = rounds.slice(1);
      const before = measured.flatMap((r) => r.before);
      const during = measured.flatMap((r) => r.during);
      const first = measured.flatMap((r) => r.firstTokens);
      console.log(
        `  ${(runningGrammar ? 'with a grammar' : 'unconstrained').padEnd(16)}  ${ms(percentile(before, 50)).padStart(9)} / ${ms(Math.max(...before)).padEnd(9)}` +
          `   ${ms(percentile(during, 50)).padStart(9)} / ${ms(percentile(during, 99))} / ${ms(Math.max(...during)).padEnd(9)}` +
          `           ${ms(percentile(first, 50))} / ${ms(Math.max(...first))}`,
      );
    }
  } finally {
    await checker.close();
    await client.close();
    await rm(folder, { recursive: true, force: true });
  }
}
