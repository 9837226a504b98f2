// `npm run cuda:provider [-- --from FILE.tgz] [--check]`: puts ONNX Runtime 1.29.0's CUDA 13 execution
// provider beside onnxruntime-node 1.29.0's libonnxruntime.so.1, where that core looks for it (the core
// loads libonnxruntime_providers_shared.so first, then the CUDA provider, from its own folder). The
// provider comes from the npm package com.github.asus4.onnxruntime.linux-x64-gpu, pinned by version and
// integrity; it is opt-in (≈180 MB) and never part of `npm ci`. Then it says which CUDA 13 libraries the
// provider needs and whether this process's LD_LIBRARY_PATH or the loader cache has them.
// --check only reports (what is installed, what is missing); exit 1 when the provider cannot run here.
// --into DIR only extracts the provider files into DIR (the device pack).

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { OnnxruntimeCoreError, onnxruntimeCore } from './onnxruntime-core';

export const PROVIDER_PACKAGE = 'com.github.asus4.onnxruntime.linux-x64-gpu@0.4.9';
const PROVIDER_INTEGRITY = 'sha512-FopIhNE/Ng+v2X65wVc9clPCBCvhvA53Hxo2U0Kf5fGdVsC7iCA+mZ0KLWggcQAj7TIZ6pNidR4AC10g74Xo6w==';
/** The provider is a build of this ONNX Runtime release; nothing checks the match at load, so this script does. */
const CORE_VERSION = '1.29.0';
export const PROVIDER_FILES = ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];
/** The CUDA libraries the provider links (readelf NEEDED); cuDNN is opened on demand by name only. */
export const CUDA_LIBRARIES = ['libcudart.so.13', 'libcublas.so.13', 'libcublasLt.so.13', 'libcurand.so.10'];

class InstallError extends Error {}

/**
 * Where each CUDA library resolves: the first LD_LIBRARY_PATH folder that holds it, else the loader cache
 * (`ldconfig -p`), else null. The dynamic loader reads LD_LIBRARY_PATH when the process starts, so the
 * answer is for processes started with this environment.
 */
export function locateCudaLibraries(env: NodeJS.ProcessEnv = process.env, loaderCache = readLoaderCache()): Map<string, string | null> {
  const folders = (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  const found = new Map<string, string | null>();
  for (const name of CUDA_LIBRARIES) {
    const inPath = folders.map((folder) => path.join(folder, name)).find((file) => fs.existsSync(file));
    found.set(name, inPath ?? loaderCache.get(name) ?? null);
  }
  return found;
}

function readLoaderCache(): Map<string, string> {
  const result = spawnSync('ldconfig', ['-p'], { encoding: 'utf8' });
  const cache = new Map<string, string>();
  for (const line of (result.stdout ?? '').split('\n')) {
    const match = /^\s*(\S+) \(.*x86-64.*\) => (\S+)$/.exec(line);
    if (match && !cache.has(match[1])) cache.set(match[1], match[2]);
  }
  return cache;
}

function integrityOf(file: string): string {
  return `sha512-${createHash('sha512').update(fs.readFileSync(file)).digest('base64')}`;
}

/** The package tarball: --from, or `npm pack` into a cache folder kept between runs. */
function providerTarball(from: string | undefined): string {
  if (from) return path.resolve(from);
  const cache = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'mistral-cuda-provider');
  fs.mkdirSync(cache, { recursive: true });
  const name = `${PROVIDER_PACKAGE.replace('@', '-')}.tgz`;
  const cached = path.join(cache, name);
  if (!fs.existsSync(cached)) {
    console.log(`cuda provider: fetching ${PROVIDER_PACKAGE} from the npm registry (≈180 MB)`);
    const result = spawnSync('npm', ['pack', '--silent', '--pack-destination', cache, PROVIDER_PACKAGE], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (result.status !== 0) throw new InstallError(`npm pack ${PROVIDER_PACKAGE} failed (exit ${result.status})`);
  }
  return cached;
}

/** Into onnxruntime-node's core folder, or into `into` (the device pack, which carries it beside a copy of that core). */
function install(from: string | undefined, into: string | undefined): void {
  const { libDir: coreDir, version } = onnxruntimeCore();
  const libDir = into ? path.resolve(into) : coreDir;
  fs.mkdirSync(libDir, { recursive: true });
  if (version !== CORE_VERSION)
    throw new InstallError(`onnxruntime-node is ${version}; the CUDA provider of ${PROVIDER_PACKAGE} needs its ${CORE_VERSION} core`);
  const tarball = providerTarball(from);
  const integrity = integrityOf(tarball);
  if (integrity !== PROVIDER_INTEGRITY) throw new InstallError(`${tarball} is not ${PROVIDER_PACKAGE} (integrity ${integrity.slice(0, 24)}...)`);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'cuda-provider-'));
  try {
    const members = PROVIDER_FILES.map((name) => `package/Plugins/Linux/x64/${name}`);
    const result = spawnSync('tar', ['xzf', tarball, '-C', scratch, ...members], { encoding: 'utf8' });
    if (result.status !== 0) throw new InstallError(`tar could not extract the provider: ${result.stderr.trim()}`);
    for (const member of members) {
      // Copy then rename: a process that has the old file mapped keeps a consistent one.
      const target = path.join(libDir, path.basename(member));
      fs.copyFileSync(path.join(scratch, member), `${target}.part`);
      fs.renameSync(`${target}.part`, target);
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
  const where = into ? libDir : `beside ${path.join(libDir, 'libonnxruntime.so.1')}`;
  console.log(`cuda provider: installed ${PROVIDER_FILES.join(', ')} ${where} (onnxruntime ${version})`);
}

/** Prints what is installed and which CUDA libraries resolve; true when both are complete. */
function report(): boolean {
  const { libDir } = onnxruntimeCore();
  const missingFiles = PROVIDER_FILES.filter((name) => !fs.existsSync(path.join(libDir, name)));
  if (missingFiles.length > 0) console.log(`cuda provider: not installed (${missingFiles.join(', ')} missing in ${libDir}); run npm run cuda:provider`);
  const libraries = locateCudaLibraries();
  for (const [name, where] of libraries) console.log(`  ${name.padEnd(18)} ${where ?? 'NOT FOUND'}`);
  const missing = [...libraries].filter(([, where]) => where === null).map(([name]) => name);
  if (missing.length > 0) {
    console.log(
      `cuda provider: ${missing.join(', ')} not found: install CUDA 13 (cuBLAS, cuRAND, cudart) or put NVIDIA's pip wheels' lib folders on LD_LIBRARY_PATH (gpu-backend/device/cuda-env.sh prints them)`,
    );
  }
  return missingFiles.length === 0 && missing.length === 0;
}

function main(): void {
  const { values } = parseArgs({
    options: { from: { type: 'string' }, into: { type: 'string' }, check: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(`Usage: npm run cuda:provider [-- --from FILE.tgz] [--into DIR] [--check]
Installs ONNX Runtime ${CORE_VERSION}'s CUDA 13 provider (${PROVIDER_PACKAGE}, pinned by integrity) beside
onnxruntime-node's core, then reports which CUDA 13 libraries resolve. --check only reports (exit 1 when incomplete).
--into DIR extracts the two provider files into DIR instead, and reports nothing (the device pack uses it).`);
    return;
  }
  try {
    if (values.into) return install(values.from, values.into);
    if (!values.check) install(values.from, undefined);
    if (!report() && values.check) process.exitCode = 1;
  } catch (error) {
    if (!(error instanceof InstallError || error instanceof OnnxruntimeCoreError)) throw error;
    console.error(`cuda provider: ${error.message}`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === path.resolve(new URL(import.meta.url).pathname)) main();
