// The playground page in a real browser: Debian's Chromium, headless, driven by playwright-core over CDP,
// against the local stack (a real backend process + the edge under `wrangler dev`, as `npm start` runs them).
// Without Chromium the test says it skipped and how to install it; under CI it fails instead.
/// <reference lib="dom" />

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { freePort, generateApiKey, REPO_ROOT, startStack, type Stack } from '../scripts/stack';
import { CHROMIUM, CHROMIUM_FLAGS, HAVE_CHROMIUM, INSTALL_HINT, requireChromium } from './headless-chromium';

requireChromium('the playground browser test');
const SCREENSHOT = path.join(REPO_ROOT, 'test-artifacts', 'playground.png');
const SYSTEM_PROMPT = 'playground-demo';
const MARKUP = '<img src=x onerror="window.__pwned=1">';

let stack: Stack;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
const logLines: string[] = [];

async function backendMetric(name: string): Promise<number> {
  const text = await (await fetch(`${stack.backendUrl}/metrics`, { headers: { authorization: `Bearer ${stack.backendToken}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : 0;
}

/** Polls the backend's metrics until `done` holds (the backend counts a request when its last event is out). */
async function metricsUntil(name: string, done: (value: number) => boolean): Promise<number> {
  const deadline = Date.now() + 30_000;
  let value = await backendMetric(name);
  while (!done(value) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    value = await backendMetric(name);
  }
  return value;
}

const lastAnswer = () => page.locator('#messages li.assistant').last();
const stat = async (key: string) => (await lastAnswer().locator(`dd[data-stat="${key}"]`).textContent()) ?? '';
const answerCount = () => page.locator('#messages li.assistant').count();

/** Records, once per animation frame, the streaming answer's text length whenever it changed. */
async function recordPaints(): Promise<void> {
  await page.evaluate(() => {
    const w = window as unknown as { __paints: number[] };
    w.__paints = [];
    const tick = () => {
      const items = document.querySelectorAll<HTMLElement>('#messages li.assistant');
      const last = items[items.length - 1];
      if (last?.dataset.state === 'streaming') {
        const length = last.querySelector('.content')?.textContent?.length ?? 0;
        if (length > 0 && w.__paints[w.__paints.length - 1] !== length) w.__paints.push(length);
      }
      if (!last || last.dataset.state === 'streaming' || w.__paints.length === 0) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
}

/** Types a message and sends it with Enter; the page starts the request before the key press returns. */
async function sendMessage(text: string): Promise<void> {
  await page.fill('#prompt', text);
  await page.press('#prompt', 'Enter');
}

/** Waits until the request in flight has ended (the page enables Send again) and returns the last error shown. */
async function settledError(): Promise<string> {
  await page.waitForSelector('#send:enabled');
  return (await page.locator('#messages li.error .content').last().textContent()) ?? '';
}

async function waitForState(state: string): Promise<void> {
  await page.waitForFunction((s) => {
    const items = document.querySelectorAll<HTMLElement>('#messages li.assistant');
    return items[items.length - 1]?.dataset.state === s;
  }, state);
}

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return;
  const modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
  const edgePort = await freePort();
  const persistTo = mkdtempSync(path.join(tmpdir(), `playground-edge-${edgePort}-`));
  // A stored system prompt, put with the operator command (`npm run prompts -- put`) before the edge starts.
  // Longer than the backend's shortest cached prefix (64 tokens), so later turns report cached tokens.
  const content = 'You are the assistant of the mistral-edge-serve playground. Answer in plain text, briefly and kindly. '.repeat(6).trim();
  const put = spawnSync(process.execPath, ['--import', 'tsx', 'edge/scripts/prompts.ts', 'put', SYSTEM_PROMPT, '--text', content, '--persist-to', persistTo], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
  if (put.status !== 0) throw new Error(`npm run prompts -- put failed: ${put.stderr}`);
  stack = await startStack({
    modelDir,
    backendPort: await freePort(),
    edgePort,
    persistTo,
    apiKey: generateApiKey(),
    inspectorPort: 0,
    backendArgs: ['--threads', '1'],
    log: (line) => logLines.push(line),
  }).catch((error: Error) => {
    throw new Error(`${error.message}\n${logLines.slice(-30).join('\n')}`);
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
  page = await browser.newPage({ viewport: { width: 1180, height: 760 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/Failed to load resource/.test(message.text())) pageErrors.push(message.text());
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => console.error(`CSP violation: ${event.violatedDirective}`));
  });
}, 300_000);

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
}, 60_000);

describe.skipIf(!HAVE_CHROMIUM)(`playground page in headless Chromium${HAVE_CHROMIUM ? '' : ` (SKIPPED: no ${CHROMIUM}; ${INSTALL_HINT})`}`, () => {
  it('loads under its CSP, takes the key, lists the model and the stored system prompts, and keeps the key', async () => {
    const response = await page.goto(`${stack.edgeUrl}/`);
    expect(response?.headers()['content-security-policy']).toContain("require-trusted-types-for 'script'");
    // Every control has a label a screen reader can announce.
    const unlabelled = await page.evaluate(() =>
      Array.from(document.querySelectorAll<HTMLInputElement>('input, select, textarea'))
        .filter((control) => control.labels?.length === 0)
        .map((control) => control.id),
    );
    expect(unlabelled).toEqual([]);
    await page.fill('#api-key', stack.apiKey);
    await page.waitForSelector(`#model option[value="${stack.modelInfo.modelId}"]`, { state: 'attached' });
    await page.waitForSelector(`#system-prompt-names option[value="${SYSTEM_PROMPT}"]`, { state: 'attached' });
    await page.reload();
    expect(await page.inputValue('#api-key')).toBe(stack.apiKey);
    await page.waitForSelector(`#model option[value="${stack.modelInfo.modelId}"]`, { state: 'attached' });
  });

  it("streams an answer over several paints, then shows its usage; the text is the API's own answer", async () => {
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '64');
    await page.fill('#system-prompt', SYSTEM_PROMPT);
    const completionBefore = await backendMetric('backend_completion_tokens_total');
    await recordPaints();
    // Shift+Enter is a newline, Enter sends.
    await page.fill('#prompt', 'Hello');
    await page.press('#prompt', 'Shift+Enter');
    await page.type('#prompt', 'there');
    expect(await answerCount()).toBe(0);
    await page.press('#prompt', 'Enter');
    await waitForState('done');
    const paints = await page.evaluate(() => (window as unknown as { __paints: number[] }).__paints);
    expect(new Set(paints).size, `lengths seen while streaming: ${paints.join(',')}`).toBeGreaterThanOrEqual(2);
    expect(await page.locator('#messages li.user .content').last().textContent()).toBe('Hello\nthere');

    const completion = Number(await stat('completion_tokens'));
    expect(completion).toBeGreaterThan(0);
    expect(completion).toBeLessThanOrEqual(64);
    expect(Number(await stat('prompt_tokens'))).toBeGreaterThan(10);
    expect(await stat('cached_tokens')).toMatch(/^\d+$/);
    expect(await stat('ttft')).toMatch(/^\d+ ms$/);
    expect(await stat('tokens_per_second')).toMatch(/^\d+(\.\d)?$/);
    expect(['length', 'stop']).toContain(await stat('finish_reason'));
    expect(await stat('limits')).toMatch(/requests/);
    // Independent references: the backend counted the tokens shown, and the same request without streaming
    // (greedy) answers the same text.
    expect(await metricsUntil('backend_completion_tokens_total', (v) => v >= completionBefore + completion)).toBe(completionBefore + completion);
    const direct = await fetch(`${stack.edgeUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${stack.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: stack.modelInfo.modelId,
        system_prompt_id: SYSTEM_PROMPT,
        temperature: 0,
        max_tokens: 64,
        messages: [{ role: 'user', content: 'Hello\nthere' }],
      }),
    });
    const body = (await direct.json()) as { choices: { message: { content: string } }[] };
    expect(await lastAnswer().locator('.content').textContent()).toBe(body.choices[0]!.message.content);
  });

  it('continues the conversation with the system prompt served from the prefix cache, and saves a screenshot', async () => {
    await sendMessage('And once more, please.');
    await waitForState('done');
    await page.waitForSelector('#send:enabled');
    expect(Number(await stat('cached_tokens'))).toBeGreaterThan(0);
    expect(await page.locator('#messages li.user').count()).toBe(2);
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
  });

  it('JSON mode sends response_format json_object, and an answer that stops is a JSON object', async () => {
    await page.check('#json-mode');
    await page.fill('#temperature', '1');
    await page.fill('#max-tokens', '200');
    const sent = page.waitForRequest((request) => request.url().endsWith('/v1/chat/completions'));
    await sendMessage('Describe a cat as JSON.');
    expect((await sent).postDataJSON()).toMatchObject({ response_format: { type: 'json_object' } });
    await waitForState('done');
    const text = (await lastAnswer().locator('.content').textContent()) ?? '';
    expect(text.trimStart().startsWith('{')).toBe(true);
    if ((await stat('finish_reason')) === 'stop') expect(typeof JSON.parse(text)).toBe('object');
    await page.uncheck('#json-mode');
    await page.fill('#temperature', '0');
  });

  it('Stop ends a long answer, and the backend counts one abort for it', async () => {
    // Locally workerd sometimes never tells the worker that a client closed its stream (it then runs to
    // max_tokens; docs/bench/edge-dev-runtime.md), so a try whose drop was lost ends as "length". Each try must
    // end the request with at most one abort, and one of three must be an abort: a page or edge that never
    // cancels fails every try.
    await page.fill('#max-tokens', '1500');
    const outcome = (name: string) => backendMetric(`backend_requests_total{outcome="${name}"}`);
    let aborted = false;
    for (let attempt = 0; attempt < 3 && !aborted; attempt++) {
      await page.click('#new-chat');
      const [abortsBefore, lengthsBefore] = [await outcome('abort'), await outcome('length')];
      await sendMessage('Tell me a very long story.');
      await page.waitForFunction(() => (document.querySelector('#messages li.assistant .content')?.textContent?.length ?? 0) > 0);
      expect(await page.isDisabled('#send')).toBe(true);
      // The random model may end its answer (an early EOS) between that check and the click: such a try
      // says nothing about Stop, and the next one is taken. A Stop that never enables still fails all three.
      if (
        !(await page.click('#stop-button', { timeout: 5_000 }).then(
          () => true,
          () => false,
        ))
      ) {
        await waitForState('done');
        continue;
      }
      await waitForState('stopped');
      expect(await stat('finish_reason')).toBe('stopped');
      expect(await page.isEnabled('#send')).toBe(true);
      const ended = async () => (await outcome('abort')) - abortsBefore + (await outcome('length')) - lengthsBefore;
      await vi.waitFor(async () => expect(await ended()).toBeGreaterThan(0), { timeout: 30_000, interval: 100 });
      expect(await ended()).toBe(1);
      expect(await metricsUntil('backend_running_sequences', (v) => v === 0)).toBe(0);
      aborted = (await outcome('abort')) - abortsBefore === 1;
    }
    expect(aborted).toBe(true);
    await page.fill('#max-tokens', '16');
  });

  it("shows the API's messages: 400 naming the field, 401 for a wrong key, 429 with its retry-after", async () => {
    await page.fill('#temperature', '5');
    await sendMessage('Too hot?');
    expect(await settledError()).toMatch(/^400: Invalid value for 'temperature': .* \(field: temperature\)$/);
    expect(await page.inputValue('#prompt')).toBe('Too hot?');
    await page.fill('#temperature', '0');

    await page.fill('#api-key', 'sk-wrong-key-0000');
    await page.waitForFunction(() => document.querySelector('#status')?.textContent?.startsWith('401'));
    expect(await page.textContent('#status')).toBe('401: Incorrect API key provided.');
    await sendMessage('Who am I?');
    expect(await settledError()).toBe('401: Incorrect API key provided.');
    await page.fill('#api-key', stack.apiKey);
    await page.waitForFunction(() => document.querySelector('#status')?.textContent?.startsWith('Key accepted'));

    // The dev key's limits are too generous to reach here: the edge's 429 shape, answered by the page's network layer.
    await page.route('**/v1/chat/completions', (route) =>
      route.fulfill({
        status: 429,
        headers: { 'content-type': 'application/json', 'retry-after': '7' },
        body: JSON.stringify({
          error: { message: 'Rate limit reached for requests: limit 600 per minute.', type: 'rate_limit_error', param: null, code: 'rate_limit_exceeded' },
        }),
      }),
    );
    await sendMessage('Again!');
    const refused = await settledError();
    await page.unroute('**/v1/chat/completions');
    expect(refused).toBe('429: Rate limit reached for requests: limit 600 per minute. Retry after 7 s.');
  });

  it('shows markup as text: in an API message (real path) and in streamed model output', async () => {
    // The edge echoes an unknown system prompt name in its 404 message.
    await page.fill('#system-prompt', MARKUP);
    await sendMessage('Hi');
    expect(await settledError()).toBe(`404: No system prompt named '${MARKUP}'. (field: system_prompt_id)`);
    await page.fill('#system-prompt', '');
    // The built-in model has random weights and no request field forces its tokens, so the stream is served
    // by the browser's network layer, in the edge's chunk format, through the page's own stream reader.
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    await page.route('**/v1/chat/completions', (route) =>
      route.fulfill({
        status: 200,
        headers: { 'content-type': 'text/event-stream' },
        body:
          chunk({ role: 'assistant', content: '' }, null) +
          chunk({ content: 'Here: ' }, null) +
          chunk({ content: MARKUP }, null) +
          chunk({}, 'stop') +
          'data: [DONE]\n\n',
      }),
    );
    await sendMessage('Show me an image tag.');
    await waitForState('done');
    await page.unroute('**/v1/chat/completions');
    expect(await lastAnswer().locator('.content').textContent()).toBe(`Here: ${MARKUP}`);
    expect(await page.locator('#messages img').count()).toBe(0);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
  });

  it('raised no page errors and no CSP violations', () => {
    expect(pageErrors).toEqual([]);
  });
});
