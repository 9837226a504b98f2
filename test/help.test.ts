// Every command answers --help: usage on stdout, exit 0, and nothing started (no model, no server).

import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../scripts/stack';

const COMMANDS = [
  'scripts/start.ts',
  'scripts/generate.ts',
  'scripts/soak.ts',
  'gpu-backend/src/main.ts',
  'gpu-backend/src/cli/generate.ts',
  'gpu-backend/bench/bench-model.ts',
  'gpu-backend/bench/bench-serve.ts',
  'gpu-backend/bench/bench-grammar.ts',
  'gpu-backend/bench/bench-peer.ts',
  'gpu-backend/bench/bench-int4.ts',
  'scripts/bench-load.ts',
  'edge/scripts/keys.ts',
  'edge/scripts/prompts.ts',
  'edge/scripts/build-tokenizer.ts',
  'edge/bench/bench-edge.ts',
  'edge/bench/bench-tokenizer.ts',
  'edge/bench/drop-probe.ts',
  'gpu-backend/device/check.ts',
];

function run(file: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, file), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('--help', () => {
  it.concurrent.each([...COMMANDS.map((file) => [file, '--help']), ['scripts/start.ts', '-h']])('%s %s prints usage and exits 0', async (file, flag) => {
    const { code, stdout, stderr } = await run(file, [flag]);
    expect(code, stderr).toBe(0);
    expect(stdout).toMatch(/^usage:/im);
  });
});
