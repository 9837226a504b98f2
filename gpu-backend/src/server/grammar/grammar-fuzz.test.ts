// Hostile schemas through the real backend process (main.ts, the built-in model, the check thread, the engine
// thread): every one is answered (200, or 400/413 before any stream), no answer carries an error, every answer
// that stops is JSON that ajv accepts for its schema, and the process stays up and serves a plain request
// after each batch. A schema that ends the process (as `{"$ref": "#"}` did) fails this test at its seed.

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020';
import mistralTokenizer from 'mistral-tokenizer-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateEvent, GenerateResponse } from '../../../../shared/protocol';
import { SseParser } from '../../../../shared/sse';
import { DEFAULT_MODEL_DIR, ensureDefaultModel } from '../../model/checkpoint/default-model';
import { fuzzSchema } from './schema-fuzz';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../main.ts');
const SCHEMAS = 240;
const CONCURRENCY = 4;
const TOKEN = 'fuzz-token';
const PROMPT = [1, 733, 16289, 28793, 22557, 28723, 733, 28748, 16289, 28793];
const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

let child: ChildProcess;
let url: string;
let stderr = '';

beforeAll(async () => {
  const modelDir = await ensureDefaultModel(DEFAULT_MODEL_DIR);
  child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--model', modelDir, '--port', '0', '--threads', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BACKEND_TOKEN: TOKEN },
  });
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  url = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      const match = /listening on (http:\/\/[^:]+:\d+)/.exec(stdout);
      if (match) resolve(match[1]);
    });
    child.on('exit', (code) => reject(new Error(`backend exited (${code}) before listening: ${stderr}`)));
  });
  // /ready turns 200 once the engine thread has warmed up: polled, as an operator's probe would.
  while (!(await fetch(`${url}/ready`)).ok) await new Promise((resolve) => setTimeout(resolve, 50));
});

afterAll(() => {
  child?.kill('SIGKILL');
});

type Outcome = { status: number; finish: string | null; ids: number[]; errors: number };

async function generate(seed: number, grammar: unknown, stream: boolean): Promise<Outcome> {
  const body = { requestId: `fuzz-${seed}`, tokenIds: PROMPT, stream, sampling: { temperature: 1, seed, maxTokens: 40 }, ...(grammar ? { grammar } : {}) };
  const response = await fetch(`${url}/v1/generate`, { method: 'POST', headers, body: JSON.stringify(body) });
  if (response.status !== 200) {
    await response.text();
    return { status: response.status, finish: null, ids: [], errors: 0 };
  }
  if (!stream) {
    const [choice] = ((await response.json()) as GenerateResponse).choices;
    return { status: 200, finish: choice.finishReason, ids: choice.tokenIds, errors: 0 };
  }
  const events = new SseParser().push(await response.text()).map((message) => ({ event: message.event, data: JSON.parse(message.data) }) as GenerateEvent);
  const finish = events.find((event) => event.event === 'finish');
  return {
    status: 200,
    finish: finish?.event === 'finish' ? finish.data.finishReason : null,
    ids: events.flatMap((event) => (event.event === 'token' ? event.data.tokenIds : [])),
    errors: events.filter((event) => event.event === 'error').length,
  };
}

/** Null when the answer is what its schema allows (or was cut by max_tokens); otherwise what is wrong. */
function violation(schema: unknown, outcome: Outcome): string | null {
  if (outcome.errors > 0) return 'an in-band error';
  if (outcome.finish !== 'stop') return outcome.finish === 'length' ? null : `finish ${outcome.finish}`;
  const text = mistralTokenizer.decode(outcome.ids, false, false);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return `not JSON: ${text}`;
  }
  const validate = new Ajv2020({ strict: false, validateFormats: false }).compile(schema as object);
  return validate(value) ? null : `${text} breaks the schema: ${JSON.stringify(validate.errors?.[0])}`;
}

describe('grammar fuzz through the backend process', () => {
  it(`answers ${SCHEMAS} hostile schemas without an error or a broken answer, and stays up`, async () => {
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    for (let start = 0; start < SCHEMAS; start += CONCURRENCY) {
      const seeds = Array.from({ length: Math.min(CONCURRENCY, SCHEMAS - start) }, (_, i) => start + i);
      const outcomes = await Promise.all(
        seeds.map((seed) => generate(seed, { type: 'json_schema', schema: fuzzSchema(seed).schema }, seed % 2 === 0).catch((error: Error) => error)),
      );
      for (const [index, outcome] of outcomes.entries()) {
        const seed = seeds[index];
        if (outcome instanceof Error) problems.push(`seed ${seed}: request failed: ${outcome.message}`);
        else {
          statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
          if (![200, 400, 413].includes(outcome.status)) problems.push(`seed ${seed}: status ${outcome.status}`);
          const wrong = outcome.status === 200 ? violation(fuzzSchema(seed).schema, outcome) : null;
          if (wrong) problems.push(`seed ${seed} (${fuzzSchema(seed).family}): ${wrong.slice(0, 300)}`);
        }
      }
      expect(child.exitCode, `the backend exited after seeds ${seeds.join(',')}: ${stderr.slice(-2000)}`).toBeNull();
      const plain = await generate(10_000 + start, null, true);
      expect(plain.status).toBe(200);
      expect(plain.finish).not.toBeNull();
    }
    expect(problems).toEqual([]);
    // The families must reach both outcomes, or the fuzz proves little.
    expect(statuses.get(200) ?? 0).toBeGreaterThan(SCHEMAS / 5);
    expect(statuses.get(400) ?? 0).toBeGreaterThan(SCHEMAS / 5);
  });
});
