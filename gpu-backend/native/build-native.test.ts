// The addon build's failure paths as `npm ci` meets them: the install goes on with one line, and only
// `npm run build:native` (--strict) fails.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(process.cwd());
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'build-native-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function run(file: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd, timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('build-native', () => {
  it('without onnxruntime-node it prints one line and exits 0; --strict exits 1', async () => {
    // A copy outside the repository resolves no packages, as on an install that lacks them.
    const copy = path.join(scratch, 'gpu-backend/native/build-native.ts');
    fs.mkdirSync(path.dirname(copy), { recursive: true });
    for (const name of ['build-native.ts', 'onnxruntime-core.ts'])
      fs.copyFileSync(path.join(ROOT, 'gpu-backend/native', name), path.join(path.dirname(copy), name));
    const [lenient, strict] = await Promise.all([run(TSX, [copy], scratch), run(TSX, [copy, '--strict'], scratch)]);
    const line = 'native session: not built (onnxruntime-node is not installed); the JS session (--runtime js) still serves\n';
    expect([lenient.code, lenient.stdout, lenient.stderr]).toEqual([0, line, '']);
    expect([strict.code, strict.stdout]).toEqual([1, line]);
  });

  it("the postinstall script succeeds with one line in a tree without gpu-backend/native (the container's npm ci)", async () => {
    const { postinstall } = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts;
    const empty = fs.mkdtempSync(path.join(scratch, 'tree-'));
    const result = await run('sh', ['-c', postinstall], empty);
    expect([result.code, result.stdout]).toEqual([
      0,
      'native session: not built (gpu-backend/native is not in this tree); the JS session (--runtime js) still serves\n',
    ]);
  });
});
