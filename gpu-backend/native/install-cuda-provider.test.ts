// The CUDA provider's install and its library lookup, without the 180 MB download: a tarball that is not
// the pinned package is refused before anything is written, and both lookups (this script's and the
// device machine's cuda-env.sh) find CUDA 13's libraries in a pip-wheel tree and name the missing ones.

import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CUDA_LIBRARIES, locateCudaLibraries, PROVIDER_FILES } from './install-cuda-provider';
import { onnxruntimeCore } from './onnxruntime-core';

const ROOT = path.resolve(process.cwd());
const TSX = path.join(ROOT, 'node_modules/.bin/tsx');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-provider-'));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: ROOT, env, timeout: 50_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

/** A Python environment's site-packages with NVIDIA's wheels: `names` present, one folder per wheel. */
function pipTree(root: string, names: string[]): string {
  const nvidia = path.join(root, 'venv/lib/python3.12/site-packages/nvidia');
  for (const name of names) {
    const folder = path.join(nvidia, name.replace(/^lib|\.so.*$/g, ''), 'lib');
    fs.mkdirSync(folder, { recursive: true });
    fs.writeFileSync(path.join(folder, name), '');
  }
  return nvidia;
}

describe('npm run cuda:provider', () => {
  it('refuses a tarball that is not the pinned package, names why, and writes nothing beside the core', async () => {
    const fake = path.join(scratch, 'fake.tgz');
    fs.writeFileSync(fake, 'not the provider');
    const { libDir } = onnxruntimeCore();
    const before = PROVIDER_FILES.map((name) => fs.existsSync(path.join(libDir, name)));
    const { code, stderr } = await run(TSX, ['gpu-backend/native/install-cuda-provider.ts', '--from', fake]);
    expect(code).toBe(1);
    expect(stderr).toMatch(/^cuda provider: .*fake\.tgz is not com\.github\.asus4\.onnxruntime\.linux-x64-gpu@0\.4\.9 \(integrity sha512-/);
    expect(PROVIDER_FILES.map((name) => fs.existsSync(path.join(libDir, name)))).toEqual(before);
  });

  it('finds each CUDA library in the first LD_LIBRARY_PATH folder that has it, else the loader cache, else reports it missing', () => {
    const first = path.join(scratch, 'first');
    const second = path.join(scratch, 'second');
    fs.mkdirSync(first, { recursive: true });
    fs.mkdirSync(second, { recursive: true });
    fs.writeFileSync(path.join(first, 'libcublas.so.13'), '');
    fs.writeFileSync(path.join(second, 'libcublas.so.13'), '');
    fs.writeFileSync(path.join(second, 'libcurand.so.10'), '');
    const cache = new Map([['libcudart.so.13', '/usr/local/cuda/lib64/libcudart.so.13']]);
    const found = locateCudaLibraries({ LD_LIBRARY_PATH: `${first}::${second}` }, cache);
    expect(Object.fromEntries(found)).toEqual({
      'libcudart.so.13': '/usr/local/cuda/lib64/libcudart.so.13',
      'libcublas.so.13': path.join(first, 'libcublas.so.13'),
      'libcublasLt.so.13': null,
      'libcurand.so.10': path.join(second, 'libcurand.so.10'),
    });
  });
});

describe('gpu-backend/device/cuda-env.sh', () => {
  const script = path.join(ROOT, 'gpu-backend/device/cuda-env.sh');

  it('prints an LD_LIBRARY_PATH with every folder of a pip-wheel CUDA 13, cuDNN included, each once', async () => {
    const nvidia = pipTree(path.join(scratch, 'complete'), [...CUDA_LIBRARIES, 'libcudnn.so.9']);
    const { code, stdout, stderr } = await run(script, [path.join(scratch, 'complete')], { ...process.env, LD_LIBRARY_PATH: '/already/there' });
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const folders = stdout
      .trim()
      .replace(/^export LD_LIBRARY_PATH=/, '')
      .split(':');
    expect(folders.at(-1)).toBe('/already/there');
    const wanted = [...CUDA_LIBRARIES, 'libcudnn.so.9'].map((name) => path.dirname(findUnder(nvidia, name)));
    expect(new Set(folders.slice(0, -1))).toEqual(new Set(wanted));
    expect(folders.length - 1).toBe(new Set(wanted).size);
  });

  it('exits 1 and names the libraries it could not find', async () => {
    pipTree(path.join(scratch, 'partial'), ['libcudart.so.13', 'libcurand.so.10']);
    const { code, stderr } = await run(script, [path.join(scratch, 'partial')]);
    expect(code).toBe(1);
    expect(stderr).toContain('libcublas.so.13 libcublasLt.so.13');
    expect(stderr).not.toContain('libcudart');
  });
});

function findUnder(dir: string, name: string): string {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.name === name) return path.join(entry.parentPath, entry.name);
  }
  throw new Error(`${name} not under ${dir}`);
}
