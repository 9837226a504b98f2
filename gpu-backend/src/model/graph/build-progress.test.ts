// Conversion progress: a bar redrawn in place on a terminal, plain lines in logs, and the real backend's
// first start of a model (a fresh ONNX cache) saying what it does and where the cache went.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BuildProgress } from './build-progress';

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'main.ts');

describe('BuildProgress', () => {
  it('writes a plain line per tenth in logs, whatever the number of updates', () => {
    const out: string[] = [];
    const progress = new BuildProgress('model conversion', 33, (text) => out.push(text), false);
    for (let done = 0; done <= 33; done++) progress.update(done, `layer ${done}/33`);
    progress.finish('cached in /x');
    const percents = out.slice(0, -1).map((line) => Number(/: (\d+)% /.exec(line)![1]));
    expect(percents).toEqual([0, 12, 21, 30, 42, 52, 61, 73, 82, 91, 100]);
    expect(out.every((line) => line.endsWith('\n') && !line.includes('\r'))).toBe(true);
    expect(out.at(-1)).toMatch(/^model conversion: cached in \/x \(\d+\.\d s\)\n$/);
  });

  it('redraws one bar on a terminal and ends it before the next line', () => {
    const out: string[] = [];
    const progress = new BuildProgress('model conversion', 4, (text) => out.push(text), true);
    progress.update(2, 'layer 2/4');
    progress.update(4, 'LM head');
    progress.line('writing model.onnx');
    expect(out[0]).toMatch(/^\rmodel conversion: \[#{15}\.{15}\] 50% layer 2\/4 \(/);
    expect(out[1]).toMatch(/^\rmodel conversion: \[#{30}\] 100% LM head/);
    expect(out.slice(2)).toEqual(['\n', 'model conversion: writing model.onnx\n']);
  });
});

describe('the backend converting a model on its first start', () => {
  it('logs the stages, every layer tenth and where the cache went; the next start says it loads the cache', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'progress-cache-'));
    const startOnce = () =>
      new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--default-model', '--port', '0', '--threads', '1', '--max-sequences', '2'], {
          env: { ...process.env, MODEL_ONNX_CACHE_DIR: cacheDir },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('listening on')) child.kill('SIGTERM');
        });
        child.on('exit', (code) => (stderr.includes('model conversion') ? resolve(stderr) : reject(new Error(`exit ${code}: ${stderr}`))));
      });
    try {
      const first = await startOnce();
      expect(first).toMatch(/model conversion: building the ONNX graph of .*mistral-tiny-random \(fp32, ~0\.\d\d GiB of weights, 4 layers\)/);
      expect(first).toContain('model conversion: 100% LM head');
      expect(first).toContain('model conversion: writing model.onnx');
      const cached = fs.readdirSync(cacheDir).filter((name) => !name.startsWith('.'));
      expect(cached).toHaveLength(1);
      expect(first).toContain(`model conversion: ONNX graph cached in ${path.join(cacheDir, cached[0])}`);
      const second = await startOnce();
      expect(second).toContain(`model conversion: loading the cached ONNX graph from ${path.join(cacheDir, cached[0])}`);
      expect(second).not.toContain('building');
    } finally {
      fs.rmSync(cacheDir, { recursive: true, force: true });
    }
  }, 120_000);
});
