// A key's billed usage through the real stack (backend process + the edge under `wrangler dev` + the official
// client): the totals are the sums of the `usage` objects its clients received, a stream whose client closes its
// TCP connection is billed what the backend generated for it (its own count, in /metrics), the numbers survive a
// restart on the same state folder, and `npm run keys -- usage` prints them.

import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLocalKey, generateApiKey, REPO_ROOT, type Stack } from '../scripts/stack';
import { streamUntilTokens } from '../scripts/stream-drop';
import { startTestStack } from './test-stack';

type Counts = { requests: number; prompt_tokens: number; cached_tokens: number; completion_tokens: number };
type UsageBody = { key_id: string; total: Counts; days: (Counts & { date: string })[] };

const persistTo = mkdtempSync(path.join(tmpdir(), 'key-usage-billing-'));
const operatorKey = generateApiKey();
const edgeLog: string[] = [];
let stack: Stack;
let key: { secret: string; keyId: string };

async function start(): Promise<Stack> {
  return startTestStack('key-usage-billing', edgeLog, { persistTo, apiKey: operatorKey });
}

beforeAll(async () => {
  key = await createLocalKey(persistTo, 'billing', { rpm: 1000, tpm: 10_000_000, concurrent: 4 });
  stack = await start();
}, 240_000);

afterAll(async () => {
  await stack?.stop();
}, 60_000);

const operatorGet = async (route: string) => fetch(`${stack.edgeUrl}${route}`, { headers: { authorization: `Bearer ${operatorKey}` } });

async function backendTotals(): Promise<{ ended: number; prompt: number; cached: number; completion: number; running: number; waiting: number }> {
  const text = await (await fetch(`${stack.backendUrl}/metrics`, { headers: { authorization: `Bearer ${stack.backendToken}` } })).text();
  const value = (name: string) => Number(new RegExp(`^backend_${name} (\\S+)$`, 'm').exec(text)?.[1]);
  // Requests whose end the backend has counted, with their tokens (in the same call), by any outcome.
  const ended = [...text.matchAll(/^backend_requests_total\{outcome="[^"]+"\} (\S+)$/gm)].reduce((sum, match) => sum + Number(match[1]), 0);
  return {
    ended,
    prompt: value('prompt_tokens_total'),
    cached: value('cached_prompt_tokens_total'),
    completion: value('completion_tokens_total'),
    running: value('running_sequences'),
    waiting: value('waiting_requests'),
  };
}

function keys(args: string[], secret = operatorKey) {
  const env: NodeJS.ProcessEnv = { ...process.env, DEV_API_KEY: secret };
  delete env.ADMIN_API_KEY;
  const result = spawnSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'edge/scripts/keys.ts'), ...args], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env,
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

// Long enough for the backend's prefix cache, so the repeats report cached tokens.
const MESSAGES = [{ role: 'user' as const, content: 'Tell me about the billing of language models, line by line. '.repeat(12) }];
const ZERO: Counts = { requests: 0, prompt_tokens: 0, cached_tokens: 0, completion_tokens: 0 };
let settled: UsageBody;

function sumOf(rows: Counts[]): Counts {
  return rows.reduce(
    (sum, row) => ({
      requests: sum.requests + row.requests,
      prompt_tokens: sum.prompt_tokens + row.prompt_tokens,
      cached_tokens: sum.cached_tokens + row.cached_tokens,
      completion_tokens: sum.completion_tokens + row.completion_tokens,
    }),
    ZERO,
  );
}

function wire(usage: OpenAI.CompletionUsage | null | undefined): Counts {
  expect(usage, 'every finished request tells its client its usage').toBeTruthy();
  const { prompt_tokens, completion_tokens, prompt_tokens_details } = usage!;
  return { requests: 1, prompt_tokens, cached_tokens: prompt_tokens_details?.cached_tokens ?? 0, completion_tokens };
}

/** Streamed and non-streamed, n = 1 and n = 2: the usage objects their clients received. */
async function finishedRequests(client: OpenAI): Promise<Counts[]> {
  const model = stack.modelInfo.modelId;
  const usages: Counts[] = [];
  for (const n of [1, 2]) {
    const stream = await client.chat.completions.create({
      model,
      messages: MESSAGES,
      n,
      max_tokens: 12,
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) usage ??= chunk.usage;
    usages.push(wire(usage));
    usages.push(wire((await client.chat.completions.create({ model, messages: MESSAGES, n, max_tokens: 8, seed: n })).usage));
  }
  return usages;
}

/**
 * A stream whose client closes its TCP connection once it has seen `count` tokens (logprobs: one entry per token),
 * over a connection of its own; returns how many it saw.
 */
async function cancelledStream(count: number): Promise<number> {
  const body = { model: stack.modelInfo.modelId, messages: MESSAGES, max_tokens: 400, logprobs: true, stream: true };
  const stream = await streamUntilTokens(stack.edgeUrl, key.secret, body, count);
  stream.drop();
  return stream.seen;
}

/**
 * Until the key holds no lease (its release is what bills a request) and the backend has counted the cancelled
 * request's end and runs nothing. Under `wrangler dev` a disconnect is now and then not seen by the worker,
 * which then generates to max_tokens.
 */
async function settledRequests(endedBefore: number): Promise<void> {
  const limits = async () => (await operatorGet(`/admin/keys/${key.keyId}/limits`)).json() as Promise<{ activeLeases: number }>;
  await vi.waitFor(async () => expect((await limits()).activeLeases, edgeLog.slice(-20).join('\n')).toBe(0), { timeout: 45_000, interval: 100 });
  await vi.waitFor(async () => expect(await backendTotals()).toMatchObject({ ended: endedBefore + 1, running: 0, waiting: 0 }), {
    timeout: 30_000,
    interval: 100,
  });
}

describe("a key's billed usage, end to end", () => {
  it('bills streamed, non-streamed and n = 2 requests as their clients were told, and a cancelled stream by what was generated', async () => {
    const client = new OpenAI({ baseURL: `${stack.edgeUrl}/v1`, apiKey: key.secret, maxRetries: 0 });
    const start = await backendTotals();
    const finished = await finishedRequests(client);
    const received = sumOf(finished);
    const beforeCancel = await backendTotals();
    // The backend generated exactly what the clients were told (a count independent of the edge's).
    expect(beforeCancel.completion - start.completion).toBe(received.completion_tokens);
    expect(received.cached_tokens, 'repeated prompts hit the prefix cache').toBeGreaterThan(0);
    const tokensSeen = await cancelledStream(3);
    expect(tokensSeen).toBeGreaterThanOrEqual(3);
    await settledRequests(beforeCancel.ended);
    const end = await backendTotals();

    // The lease is released first (the slot comes back at once, billed what the edge read); the backend's count
    // amends the bill when its stop answer arrives.
    const generated = end.completion - beforeCancel.completion;
    await vi.waitFor(
      async () => {
        const response = await operatorGet(`/admin/keys/${key.keyId}/usage`);
        expect(response.status).toBe(200);
        settled = (await response.json()) as UsageBody;
        expect(settled.total.completion_tokens - received.completion_tokens, edgeLog.slice(-20).join('\n')).toBe(generated);
      },
      { timeout: 15_000, interval: 100 },
    );
    const { total } = settled;
    expect(settled.key_id).toBe(key.keyId);
    expect(total.requests).toBe(finished.length + 1);
    // The cancelled prompt is billed whole: the same messages' prompt_tokens the first client was told.
    expect(total.prompt_tokens).toBe(received.prompt_tokens + finished[0]!.prompt_tokens);
    expect(total.prompt_tokens).toBe(end.prompt - start.prompt);
    // The cancelled stream is billed what the backend generated for it, tokens still on their way to the edge when
    // the client left included (the backend's stop answer), and the prompt tokens it took from its prefix cache.
    const cancelledCompletion = total.completion_tokens - received.completion_tokens;
    expect(cancelledCompletion).toBeGreaterThanOrEqual(tokensSeen);
    expect(cancelledCompletion).toBe(generated);
    expect(total.cached_tokens - received.cached_tokens).toBe(end.cached - beforeCancel.cached);
    // The days add up to the total (one day, unless the run straddles UTC midnight).
    expect(sumOf(settled.days)).toStrictEqual(total);
    for (const day of settled.days) expect(day.date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    // The key's holder reads the same numbers.
    const own = await fetch(`${stack.edgeUrl}/v1/usage`, { headers: { authorization: `Bearer ${key.secret}` } });
    expect(await own.json()).toStrictEqual(settled);
  }, 150_000);

  it('keeps the totals across a restart on the same state folder, and `npm run keys -- usage` prints them', async () => {
    expect(settled, 'the test above ran').toBeDefined();
    await stack.stop();
    stack = await start();
    expect(await (await operatorGet(`/admin/keys/${key.keyId}/usage`)).json()).toStrictEqual(settled);

    const { total } = settled;
    const printed = keys(['usage', key.keyId, '--url', stack.edgeUrl]);
    expect(printed.code, printed.stderr).toBe(0);
    expect(printed.stdout).toContain(
      `Key ${key.keyId}: ${total.requests} requests, ${total.prompt_tokens} prompt tokens (${total.cached_tokens} of them cached), ${total.completion_tokens} completion tokens.`,
    );
    const cells = (label: string, counts: Counts) =>
      new RegExp(`^${label}\\s+${counts.requests}\\s+${counts.prompt_tokens}\\s+${counts.cached_tokens}\\s+${counts.completion_tokens}$`, 'm');
    for (const day of settled.days) expect(printed.stdout).toMatch(cells(day.date, day));
    expect(printed.stdout).toMatch(cells('total', total));
    const json = keys(['usage', key.keyId, '--url', stack.edgeUrl, '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toStrictEqual(settled);

    const unknown = keys(['usage', 'k_no_such_key', '--url', stack.edgeUrl]);
    expect(unknown).toMatchObject({ code: 1, stdout: '', stderr: 'keys: no key with id k_no_such_key (see `npm run keys -- list`)\n' });
    // An edge without the route (here: the real edge's 404 for an unknown path) is not a missing key.
    const noRoute = keys(['usage', key.keyId, '--url', `${stack.edgeUrl}/elsewhere`]);
    expect(noRoute.code).toBe(1);
    expect(noRoute.stderr).toMatch(/^keys: the edge at \S+ has no \/elsewhere\/admin\/keys\/\S+\/usage \(HTTP 404\)[^\n]*\n$/);
    const notOperator = keys(['usage', key.keyId, '--url', stack.edgeUrl], key.secret);
    expect(notOperator.code).toBe(1);
    expect(notOperator.stderr).toMatch(/^keys: the edge at \S+ answered HTTP 403: This API key is not an operator key[^\n]*\n$/);
    const missing = keys(['usage', '--url', stack.edgeUrl]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^keys: usage needs a keyId[^\n]*\n$/);
  }, 240_000);
});
