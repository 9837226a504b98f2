// Builds llama-loop.cc, bench:peer's C++ row, against the prebuilt llama.cpp library that
// @node-llama-cpp/linux-x64 ships. node-llama-cpp 3.21.1 carries no headers, but it carries the
// llama.cpp source of the same release as a git bundle (llama/gitRelease.bundle, what it would build
// from): its include/ and ggml/include/ are extracted from there, so the program is compiled against
// the very declarations the library was built from (the C API passes structs by value: hand-written
// ones would not be ABI-safe). Everything lands inside the peer's node_modules, never in git.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

export interface LlamaLoop {
  /** The program; its RESULT line has the keys peer-runner.ts prints. */
  binary: string;
  /** The folder of libllama and the per-microarchitecture CPU backends (libggml-cpu-*.so) it loads. */
  backends: string;
}

export function ensureLlamaLoop(peerDir: string): LlamaLoop {
  const modules = path.join(peerDir, 'node_modules');
  const backends = path.join(modules, '@node-llama-cpp/linux-x64/bins/linux-x64');
  const bundle = path.join(modules, 'node-llama-cpp/llama/gitRelease.bundle');
  const source = path.join(peerDir, 'llama-loop.cc');
  const out = path.join(modules, '.llama-loop');
  const binary = path.join(out, 'llama-loop');
  if (existsSync(binary) && statSync(binary).mtimeMs > statSync(source).mtimeMs) return { binary, backends };
  for (const needed of [backends, bundle])
    if (!existsSync(needed)) throw new Error(`bench:peer: ${needed} is missing; remove ${modules} to reinstall the peer`);
  console.log(`building ${path.relative(process.cwd(), binary)} against ${path.relative(process.cwd(), backends)} ...`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const repo = path.join(out, 'llama.git');
  execFileSync('git', ['clone', '--quiet', '--bare', bundle, repo], { stdio: 'inherit' });
  const archive = execFileSync('git', ['--git-dir', repo, 'archive', 'HEAD', 'include', 'ggml/include'], { maxBuffer: 1 << 28 });
  execFileSync('tar', ['-x', '-C', out], { input: archive });
  rmSync(repo, { recursive: true, force: true });
  // The libraries carry the release in their names (libllama.v0.4.0.so for release v0.4.0).
  const { release } = JSON.parse(readFileSync(path.join(modules, 'node-llama-cpp/llama/binariesGithubRelease.json'), 'utf8')) as { release: string };
  const libraries = [`libllama.${release}.so`, `libggml.${release}.so`, 'libggml-base.so'].map((name) => path.join(backends, name));
  // CXX as node-gyp reads it: the addon and this program build with the same compiler.
  execFileSync(
    process.env.CXX ?? 'g++',
    [
      '-O2',
      '-std=c++17',
      '-I',
      path.join(out, 'include'),
      '-I',
      path.join(out, 'ggml/include'),
      source,
      '-o',
      `${binary}.tmp`,
      ...libraries,
      `-Wl,-rpath,${backends}`,
    ],
    { stdio: 'inherit' },
  );
  renameSync(`${binary}.tmp`, binary);
  return { binary, backends };
}
