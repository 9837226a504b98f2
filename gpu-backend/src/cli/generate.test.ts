// The generate command as users run it: JSON output equal to the reference, and clean failures
// (message, no stack, non-zero exit) for a truncated checkpoint, a config/tensor mismatch, a bad flag.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Engine } from '../model/runtime/engine';
import { NATIVE_ADDON_PATH } from '../model/runtime/native-session';
import { ReferenceModel } from '../model/reference/reference-forward';
import { parseGenerateArgs } from './generate-args';

const FIXTURE = path.join(process.env.FIXTURES_DIR ?? path.resolve(process.cwd(), '../shared/fixtures'), 'stories260k-swa16');
const CLI = path.resolve(process.cwd(), 'gpu-backend/src/cli/generate.ts');
const TSX = path.resolve(process.cwd(), 'node_modules/.bin/tsx');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'generate-cli-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(TSX, [CLI, ...args, '--onnx-cache', 'none'], { timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

function checkpointCopy(name: string, edit: (config: Record<string, unknown>, weights: Buffer) => Buffer): string {
  const dir = path.join(scratch, name);
  fs.mkdirSync(dir);
  const config = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'config.json'), 'utf8'));
  const weights = edit(config, fs.readFileSync(path.join(FIXTURE, 'model.safetensors')));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), weights);
  return dir;
}

describe('generate CLI', () => {
  it('prints the reference greedy ids; fails cleanly on a truncated or mismatched checkpoint', async () => {
    const truncated = checkpointCopy('truncated', (_config, weights) => weights.subarray(0, weights.length - 5000));
    const mismatch = checkpointCopy('mismatch', (config, weights) => {
      config.intermediate_size = 100;
      return weights;
    });
    const promptIds = [1, 461, 401, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160];
    const greedyArgs = ['--model', FIXTURE, '--prompt-ids', promptIds.join(','), '--max-new-tokens', '40', '--temperature', '0', '--ignore-eos', '--json'];
    const sampledArgs = ['--model', FIXTURE, '--prompt-ids', promptIds.join(','), '--max-new-tokens', '40', '--temperature', '0.9', '--seed', '5', '--json'];
    const [ok, native, badFile, speculative, sampledOff, sampledOn] = await Promise.all([
      runCli([...greedyArgs, '--chunk-size', '5']),
      runCli([...greedyArgs, '--runtime', 'native']),
      runCli(['--model', truncated, '--prompt-ids', '1,2', '--json']),
      runCli([...greedyArgs, '--speculative', 'ngram', '--spec-tokens', '4']),
      runCli(sampledArgs),
      runCli([...sampledArgs, '--speculative', 'ngram']),
    ]);
    const reference = await ReferenceModel.load(FIXTURE);
    const expected = { tokenIds: reference.greedy(promptIds, 40, { ignoreEos: true }) };
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout.trim())).toEqual(expected);
    // Prompt-lookup drafts verified (window 16, crossed): the same ids, and the counts beside them.
    const { tokenIds, speculative: counts } = JSON.parse(speculative.stdout.trim());
    expect(tokenIds).toEqual(expected.tokenIds);
    expect(counts.drafted).toBeGreaterThan(0);
    expect(counts.accepted).toBeLessThanOrEqual(counts.drafted);
    // A seeded sampled run draws one number per id either way, so drafts change nothing there either.
    expect(JSON.parse(sampledOn.stdout.trim()).tokenIds).toEqual(JSON.parse(sampledOff.stdout.trim()).tokenIds);
    // The native session (window 16, 57 positions: past its window) gives the same ids; without the addon, one line.
    if (fs.existsSync(NATIVE_ADDON_PATH)) expect([native.code, JSON.parse(native.stdout.trim())]).toEqual([0, expected]);
    else expect([native.code, native.stderr.trim()]).toEqual([1, expect.stringMatching(/^generate: the native session addon is not built/)]);
    expect(badFile.code).toBe(1);
    expect(badFile.stderr).toMatch(/^generate: .*model\.safetensors/m);
    expect(badFile.stderr).not.toMatch(/\n\s+at /);
    // The same load path in-process (a spawn costs seconds here): the message names file and shape.
    const options = { modelDir: mismatch, dtype: 'fp32' as const, executionProvider: 'cpu' as const, intraOpThreads: 1, maxSequences: 1, onnxCacheDir: null };
    await expect(Engine.load(options)).rejects.toThrow(/model\.safetensors.*shape/);
  });

  it('names the flag at fault', () => {
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,2', '--dtype', 'int3'])).toThrow(/--dtype/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,2', '--kv-cache-dtype', 'fp8'])).toThrow(/--kv-cache-dtype/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1,x'])).toThrow(/--prompt-ids/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1', '--max-new-tokens', '-3'])).toThrow(/max-new-tokens/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1', '--temperature', '-1'])).toThrow(/--temperature/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1', '--top-p', '0'])).toThrow(/--top-p/);
    expect(() => parseGenerateArgs(['--prompt-ids', '1'])).toThrow(/--model/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1', '--bogus'])).toThrow(/--bogus/);
    expect(() => parseGenerateArgs(['--model', 'm', '--prompt-ids', '1', '--runtime', 'wasm'])).toThrow(/--runtime must be js or native/);
    expect(parseGenerateArgs(['--model', 'm', '--prompt-ids', '1, 2', '--threads', '2', '--dtype', 'int4', '--runtime', 'native', '--json'])).toMatchObject({
      runtime: 'native',
      promptIds: [1, 2],
      threads: 2,
      dtype: 'int4',
      json: true,
    });
  });
});
