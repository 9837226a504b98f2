// `npm run bench:chat-cache -- --help`: turns 2..N of one chat through the whole local stack (backend +
// edge under wrangler dev), each resending the history as chat clients do. Per turn: cached_tokens against
// the longest common id prefix of the previous turn's prompt + generated ids (return_tokens_as_token_ids)
// and this turn's prompt (/tokenize), and TTFT beside that of the same-length prompt with nothing cached
// (a salted first message), measured in the same run. Prints figures; asserts nothing.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { GenerateEvent } from '../shared/protocol';
import { type SseMessage, SseParser } from '../shared/sse';
import { machineDescription } from '../gpu-backend/bench/machine';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../gpu-backend/src/model/checkpoint/default-model';
import { createLocalKey, freePort, generateApiKey, REPO_ROOT, startStack } from './stack';
import { median } from '../shared/stats';

const USAGE = `usage: npm run bench:chat-cache -- [options]
  --turns 5            turns of the chat (turn 1 has nothing to reuse)
  --repeats 3          chats per mode, each opening with another question (TTFT medians over all)
  --max-tokens 24      answer length per turn (greedy)
  --model DIR          checkpoint for the backend (default: the built-in random tiny model)
  --threads 2          backend threads`;

const { values } = parseArgs({
  options: {
    turns: { type: 'string', default: '5' },
    repeats: { type: 'string', default: '3' },
    'max-tokens': { type: 'string', default: '24' },
    model: { type: 'string' },
    threads: { type: 'string', default: '2' },
    help: { type: 'boolean', default: false },
  },
});

const BLOCK = 16;
const QUESTIONS = [
  'Tell me a story about a lighthouse keeper.',
  'What happened next?',
  'Why did she leave the island?',
  'Describe the storm in more detail.',
  'How does the story end?',
  'Give it a title.',
];

type Message = { role: 'user' | 'assistant'; content: string };
interface Turn {
  text: string;
  generatedIds: number[];
  finishReason: string;
  cachedTokens: number;
  promptTokens: number;
  ttftMs: number;
}

function sharedLength(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/** One streamed turn: the text, the ids generated, the finish reason, usage and time to the first token. */
async function readTurn(response: Response, started: number, onMessage: (turn: Turn, message: SseMessage, now: number) => void): Promise<Turn> {
  if (!response.ok || !response.body) throw new Error(`request failed: ${response.status} ${await response.text()}`);
  const turn: Turn = { text: '', generatedIds: [], finishReason: '', cachedTokens: -1, promptTokens: -1, ttftMs: -1 };
  const parser = new SseParser();
  const decoder = new TextDecoder();
  const reader = response.body.getReader();
  for (let read = await reader.read(); !read.done; read = await reader.read()) {
    for (const message of parser.push(decoder.decode(read.value, { stream: true }))) {
      if (message.data !== '[DONE]') onMessage(turn, message, performance.now() - started);
    }
  }
  return turn;
}

const chatOptions = (maxTokens: number) => ({
  max_tokens: maxTokens,
  temperature: 0,
  stream: true,
  stream_options: { include_usage: true },
  logprobs: true,
  return_tokens_as_token_ids: true,
});

/** An OpenAI chunk: text, the generated ids from logprobs ("token_id:N"), usage. */
interface ChatChunk {
  choices: { delta?: { content?: string }; logprobs?: { content: { token: string }[] } | null; finish_reason?: string | null }[];
  usage?: { prompt_tokens: number; prompt_tokens_details: { cached_tokens: number } } | null;
}

function chatChunk(turn: Turn, message: SseMessage, now: number): void {
  const chunk = JSON.parse(message.data) as ChatChunk;
  const choice = chunk.choices[0];
  if (choice?.delta?.content && turn.ttftMs < 0) turn.ttftMs = now;
  turn.text += choice?.delta?.content ?? '';
  for (const entry of choice?.logprobs?.content ?? []) turn.generatedIds.push(Number(String(entry.token).replace('token_id:', '')));
  if (choice?.finish_reason) turn.finishReason = choice.finish_reason;
  if (chunk.usage) [turn.cachedTokens, turn.promptTokens] = [chunk.usage.prompt_tokens_details.cached_tokens, chunk.usage.prompt_tokens];
}

const generateBody = (tokenIds: number[], maxTokens: number) => ({
  requestId: `bench-${Date.now()}`,
  tokenIds,
  sampling: { temperature: 0, maxTokens },
  stream: true,
});

/** A backend event (shared/protocol.ts): token ids, finish, end with usage. */
function generateEvent(turn: Turn, message: SseMessage, now: number): void {
  const event = { event: message.event, data: JSON.parse(message.data) } as GenerateEvent;
  if (event.event === 'token') {
    if (turn.ttftMs < 0) turn.ttftMs = now;
    turn.generatedIds.push(...event.data.tokenIds);
  } else if (event.event === 'finish') turn.finishReason = event.data.finishReason;
  else if (event.event === 'end') [turn.cachedTokens, turn.promptTokens] = [event.data.usage.cachedTokens, event.data.usage.promptTokens];
}

/** Runs turns 1..N, printing turns 2..N against the previous turn's prompt + generated ids. */
async function runChat(turns: number, next: (index: number) => Promise<{ ids: number[]; turn: Turn; cold: Turn }>, ttfts: TtftPair[]): Promise<void> {
  console.log('turn  prompt  prev row  common  in blocks  cached_tokens  TTFT ms  TTFT cold ms');
  let previous: { ids: number[]; turn: Turn } | null = null;
  for (let index = 1; index <= turns; index++) {
    const { ids, turn, cold } = await next(index);
    if (previous) {
      const history = [...previous.ids, ...previous.turn.generatedIds];
      // The previous row holds its prompt and the ids fed: every streamed one after a stop (the EOS is never fed), all but the last at length.
      const row = history.length - (previous.turn.finishReason === 'length' ? 1 : 0);
      const common = sharedLength(history, ids);
      const cells = [index, ids.length, row, common, Math.floor(common / BLOCK) * BLOCK, turn.cachedTokens, turn.ttftMs.toFixed(0), cold.ttftMs.toFixed(0)];
      console.log(cells.map((cell, i) => String(cell).padStart([4, 8, 10, 8, 11, 15, 9, 14][i])).join(''));
      if (turn.promptTokens !== ids.length) console.log(`  (the request counted ${turn.promptTokens} prompt tokens, the table ${ids.length})`);
      ttfts.push({ cached: turn.ttftMs, cold: cold.ttftMs });
    }
    previous = { ids, turn };
  }
}

interface TtftPair {
  cached: number;
  cold: number;
}

function printMedians(label: string, ttfts: TtftPair[]): void {
  const [cached, cold] = [median(ttfts.map((t) => t.cached)), median(ttfts.map((t) => t.cold))];
  console.log(`${label}: TTFT median over ${ttfts.length} turns ${cached.toFixed(0)} ms, cold ${cold.toFixed(0)} ms (${(cached / cold).toFixed(2)}x)`);
}

async function main(): Promise<void> {
  if (values.help) return console.log(USAGE);
  const turns = Number(values.turns);
  const repeats = Number(values.repeats);
  const maxTokens = Number(values['max-tokens']);
  const modelDir = values.model ? path.resolve(values.model) : await ensureDefaultModel(DEFAULT_MODEL_DIR);
  const built = spawnSync(process.execPath, ['--import', 'tsx', 'edge/scripts/build-tokenizer.ts'], { cwd: REPO_ROOT, stdio: 'inherit' });
  if (built.status !== 0) throw new Error('building the edge tokenizer asset failed');
  const persistTo = mkdtempSync(path.join(tmpdir(), 'bench-chat-cache-edge-'));
  const { secret } = await createLocalKey(persistTo, 'bench-chat-cache', { rpm: 100_000, tpm: 100_000_000, concurrent: 16 });
  const stack = await startStack({
    modelDir,
    backendPort: await freePort(),
    edgePort: await freePort(),
    persistTo,
    apiKey: generateApiKey(),
    backendArgs: ['--threads', values.threads, '--max-sequences', '16', '--prefix-cache-size', '8'],
    log: (line) => (/error/i.test(line) ? process.stderr.write(`${line}\n`) : undefined),
  });
  try {
    const { modelId: model, slidingWindow } = stack.modelInfo;
    const post = async (url: string, token: string, body: object) =>
      fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const tokenize = async (body: object) =>
      ((await (await post(`${stack.edgeUrl}/tokenize`, secret, { model, ...body })).json()) as { tokens: number[] }).tokens;
    const chatTurn = async (messages: Message[]) =>
      readTurn(await post(`${stack.edgeUrl}/v1/chat/completions`, secret, { model, messages, ...chatOptions(maxTokens) }), performance.now(), chatChunk);
    const generateTurn = async (tokenIds: number[]) =>
      readTurn(await post(`${stack.backendUrl}/v1/generate`, stack.backendToken, generateBody(tokenIds, maxTokens)), performance.now(), generateEvent);
    console.log(`${machineDescription()}; model ${modelDir} (sliding window ${slidingWindow}); ${maxTokens} greedy tokens per answer; block ${BLOCK}`);

    const question = (index: number, repeat: number) => `${index === 0 && repeat > 0 ? `(${repeat}) ` : ''}${QUESTIONS[index % QUESTIONS.length]}`;
    const byText: TtftPair[] = [];
    const byIds: TtftPair[] = [];
    for (let repeat = 0; repeat < repeats; repeat++) {
      console.log(`\nA${repeat + 1}. through the edge: the answer goes back as text (re-tokenized) in the history`);
      const messages: Message[] = [{ role: 'user', content: question(0, repeat) }];
      const chatStep = async (index: number) => {
        const ids = await tokenize({ messages });
        const turn = await chatTurn(messages);
        // Nothing in the cache begins with a salted first message: the same length prefilled from scratch.
        const cold = await chatTurn(messages.map((message, i) => (i === 0 ? { ...message, content: `(${index}${Date.now()}) ${message.content}` } : message)));
        messages.push({ role: 'assistant', content: turn.text }, { role: 'user', content: question(index, repeat) });
        return { ids, turn, cold };
      };
      await runChat(turns, chatStep, byText);

      console.log(`\nB${repeat + 1}. straight to the backend: the answer goes back as the ids generated (+ EOS, then the next question)`);
      const userIds = (index: number) => tokenize({ prompt: `[INST] ${question(index, repeat)} [/INST]`, add_special_tokens: false });
      let history = [1, ...(await userIds(0))];
      const idsStep = async (index: number) => {
        const ids = history;
        const turn = await generateTurn(ids);
        const cold = await generateTurn([1, ...(await userIds(index + 7)), ...ids.slice(1)].slice(0, ids.length));
        history = [...ids, ...turn.generatedIds, stack.modelInfo.eosTokenId, ...(await userIds(index))];
        return { ids, turn, cold };
      };
      await runChat(turns, idsStep, byIds);
    }
    console.log('');
    printMedians('A (text through the edge)', byText);
    printMedians('B (ids to the backend)', byIds);
  } finally {
    await stack.stop();
    rmSync(persistTo, { recursive: true, force: true });
  }
}

await main();
