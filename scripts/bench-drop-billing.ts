// What a dropped stream costs its key: a client of a key with one concurrency slot reads a few tokens of a stream
// and closes its TCP connection; the probe then asks for the next request at once (429 while the slot is held)
// and waits for the key's bill to reach the backend's own token counts. Prints one JSON line: per round, the ms
// from the drop to the next 200 and to the settled bill, the tokens the client saw, and the billed and generated
// completion tokens of the dropped stream; and the median, min and max of the timings.

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { SseParser } from '../shared/sse';
import { backendGauges } from './soak-probes';
import { createLocalKey, freePort, generateApiKey, startStack, type Stack } from './stack';
import { type OpenStream, streamUntilTokens } from './stream-drop';

const USAGE = `Usage: npm run bench:drop-billing [-- --rounds N] [--tokens N] [--gap-ms MS]

Starts a private local stack (backend + wrangler dev), drops N streams after the client saw --tokens tokens
(default 3), --gap-ms apart (default 1000), and prints one JSON line of timings and token counts. A bill that never reaches the backend's
count is given up on after 5 s (settledMs then reads ~5000; billedAsGenerated counts the rounds that did).`;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '10' },
    tokens: { type: 'string', default: '3' },
    'gap-ms': { type: 'string', default: '1000' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const ROUNDS = Number(values.rounds);
const TOKENS = Number(values.tokens);
/** Idle time before each round, so one round's cleanup (closing connections, the bill's amendment) is not timed in the next. */
const GAP_MS = Number(values['gap-ms']);
const MESSAGES = [{ role: 'user', content: 'Tell me about the billing of language models, line by line. '.repeat(12) }];

/** Opens a stream, resolves once the client has seen `count` tokens; drop() closes the socket and returns the time. */
function openStream(stack: Stack, secret: string, count: number): Promise<OpenStream> {
  const body = { model: stack.modelInfo.modelId, messages: MESSAGES, max_tokens: 400, logprobs: true, stream: true };
  return streamUntilTokens(stack.edgeUrl, secret, body, count);
}

async function completionTotals(stack: Stack, keyId: string): Promise<{ billed: number; generated: number; ended: number }> {
  const usage = (await (await fetch(`${stack.edgeUrl}/admin/keys/${keyId}/usage`, { headers: { authorization: `Bearer ${stack.apiKey}` } })).json()) as {
    total: { completion_tokens: number };
  };
  const gauges = await backendGauges(stack.backendUrl, stack.backendToken);
  const ended = [...gauges].filter(([name]) => name.startsWith('backend_requests_total{')).reduce((sum, [, value]) => sum + value, 0);
  return { billed: usage.total.completion_tokens, generated: gauges.get('backend_completion_tokens_total') ?? 0, ended };
}

const stats = (series: number[]) => {
  const sorted = [...series].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return { median: Math.round(median), min: Math.round(sorted[0]), max: Math.round(sorted.at(-1)!) };
};

async function round(stack: Stack, key: { secret: string; keyId: string }) {
  const before = await completionTotals(stack, key.keyId);
  const stream = await openStream(stack, key.secret, TOKENS);
  const droppedAt = stream.drop();
  // Streamed, so its 200 comes at admission (and the backend's headers), not after its generation.
  const next = JSON.stringify({
    model: stack.modelInfo.modelId,
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 1,
    stream: true,
    stream_options: { include_usage: true },
  });
  const post = () =>
    fetch(`${stack.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.secret}`, 'content-type': 'application/json' },
      body: next,
    });
  let answer = await post();
  while (answer.status === 429) {
    await answer.body?.cancel();
    answer = await post();
  }
  const admittedMs = performance.now() - droppedAt;
  if (answer.status !== 200) throw new Error(`the next request got HTTP ${answer.status}`);
  const chunks = [...new SseParser().push(await answer.text())].filter((message) => message.data !== '[DONE]');
  const usage = chunks.map((message) => (JSON.parse(message.data) as { usage?: { completion_tokens: number } }).usage).find(Boolean)!;
  // Settled: both requests ended at the backend and the key is billed every token the backend generated.
  let totals = await completionTotals(stack, key.keyId);
  while (totals.ended < before.ended + 2 || totals.billed - before.billed !== totals.generated - before.generated) {
    if (performance.now() - droppedAt > 5_000) break;
    await new Promise((resolve) => setTimeout(resolve, 5));
    totals = await completionTotals(stack, key.keyId);
  }
  const billed = totals.billed - before.billed - usage.completion_tokens;
  const generated = totals.generated - before.generated - usage.completion_tokens;
  return { admittedMs, settledMs: performance.now() - droppedAt, seen: stream.seen, billed, generated };
}

async function main(): Promise<void> {
  const edgePort = await freePort();
  const persistTo = mkdtempSync(path.join(tmpdir(), `drop-billing-${edgePort}-`));
  const key = await createLocalKey(persistTo, 'drop-billing', { rpm: 10_000, tpm: 100_000_000, concurrent: 1 });
  const stack = await startStack({
    modelDir: await ensureDefaultModel(DEFAULT_MODEL_DIR),
    backendPort: await freePort(),
    edgePort,
    persistTo,
    apiKey: generateApiKey(),
    inspectorPort: 0,
    backendArgs: ['--threads', '1'],
    log: () => undefined,
  });
  try {
    const rounds = [];
    for (let i = 0; i < ROUNDS; i++) {
      await new Promise((resolve) => setTimeout(resolve, GAP_MS));
      rounds.push(await round(stack, key));
    }
    const settledRounds = rounds.filter((r) => r.billed === r.generated).length;
    console.log(
      JSON.stringify({
        rounds: ROUNDS,
        admittedMs: stats(rounds.map((r) => r.admittedMs)),
        settledMs: stats(rounds.map((r) => r.settledMs)),
        billedAsGenerated: settledRounds,
        perRound: rounds.map((r) => ({ ...r, admittedMs: Math.round(r.admittedMs), settledMs: Math.round(r.settledMs) })),
      }),
    );
  } finally {
    await stack.stop();
  }
}

await main();
