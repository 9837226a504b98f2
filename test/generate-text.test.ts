// `npm run generate` with text: the model folder's own tokenizer.model turns --prompt into ids, and the
// result is the same generation as passing those ids (published v1 vector) with --prompt-ids.

import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { DEFAULT_MODEL_CONFIG, writeRandomModel } from '../gpu-backend/src/model/checkpoint/default-model';

const TSX = path.resolve('node_modules/.bin/tsx');
const SCRIPT = path.resolve('scripts/generate.ts');
const scratch = mkdtempSync(path.join(tmpdir(), 'generate-text-'));
const modelDir = path.join(scratch, 'model');
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

beforeAll(async () => {
  await writeRandomModel(
    modelDir,
    { ...DEFAULT_MODEL_CONFIG, hidden_size: 64, num_hidden_layers: 1, intermediate_size: 96, head_dim: 16, num_attention_heads: 4, num_key_value_heads: 2 },
    7,
  );
  copyFileSync(
    path.join(process.env.FIXTURES_DIR ?? path.resolve('../shared/fixtures'), 'tokenizer/tokenizer.model.v1'),
    path.join(modelDir, 'tokenizer.model'),
  );
}, 60_000);

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      TSX,
      [SCRIPT, '--model', modelDir, '--onnx-cache', 'none', '--max-new-tokens', '6', '--json', ...args],
      { timeout: 60_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

it('tokenizes --prompt with the folder tokenizer and decodes the output', async () => {
  // The head of mistral-common's published v1 chat vector for user "a" (published-vectors.json): [1] + encode("[INST] a [/INST]").
  const published = [1, 733, 16289, 28793, 264, 733, 28748, 16289, 28793];
  const [byText, byIds] = await Promise.all([run(['--prompt', 'a', '--chat']), run(['--prompt-ids', published.join(',')])]);
  expect(byText.code, byText.stderr).toBe(0);
  expect(byIds.code, byIds.stderr).toBe(0);
  const text = JSON.parse(byText.stdout) as { tokenIds: number[]; text: string };
  const ids = JSON.parse(byIds.stdout) as { tokenIds: number[]; text: string };
  expect(text.tokenIds).toHaveLength(6);
  expect(text).toEqual(ids);
  expect(typeof text.text).toBe('string');
});

it('refuses --prompt when the folder has no tokenizer, naming the flag', async () => {
  const bare = path.join(scratch, 'bare');
  await writeRandomModel(
    bare,
    {
      ...DEFAULT_MODEL_CONFIG,
      vocab_size: 512,
      hidden_size: 32,
      num_hidden_layers: 1,
      intermediate_size: 48,
      head_dim: 16,
      num_attention_heads: 2,
      num_key_value_heads: 1,
    },
    3,
  );
  const result = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(TSX, [SCRIPT, '--model', bare, '--prompt', 'hi'], { timeout: 60_000 }, (error, _stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stderr }),
    ),
  );
  expect(result.code).toBe(2);
  expect(result.stderr).toMatch(/--prompt needs a tokenizer/);
}, 60_000);
