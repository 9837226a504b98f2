// Builds the native session addon (build/Release/native_session.node) against onnxruntime-node's own
// libonnxruntime.so.1 and the C/C++ headers of the same release, which come from the
// com.github.asus4.onnxruntime package (copied into ort/include here, never committed).
// `npm ci` runs this as postinstall: a failure is one line and exit 0 (the JS session keeps serving);
// `npm run build:native` (--strict) fails instead.

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { OnnxruntimeCoreError, onnxruntimeCore } from './onnxruntime-core';

const NATIVE_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(NATIVE_DIR, '../..');
const ORT_DIR = path.join(NATIVE_DIR, 'ort');
const LOG = path.join(NATIVE_DIR, 'build-native.log');
const require = createRequire(import.meta.url);

class BuildError extends Error {}

/** The folder of a package, from a `require.resolve` of its package.json (spelled out so knip sees the use). */
function packageFolder(resolve: () => string): string | null {
  try {
    return path.dirname(resolve());
  } catch {
    return null;
  }
}

function findFile(dir: string, name: string, mustInclude: string): string | null {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = findFile(full, name, mustInclude);
      if (found) return found;
    } else if (entry.name === name && full.includes(mustInclude)) {
      return full;
    }
  }
  return null;
}

/** Copies the release's headers into ort/include; their API version must be the library's minor version. */
function extractHeaders(ortVersion: string): string {
  const packageDir = packageFolder(() => require.resolve('com.github.asus4.onnxruntime/package.json'));
  if (!packageDir) throw new BuildError('the devDependency com.github.asus4.onnxruntime (ONNX Runtime headers) is not installed');
  // The iOS framework's headers are the platform-independent C/C++ API headers.
  const header = findFile(packageDir, 'onnxruntime_cxx_api.h', `${path.sep}ios-arm64${path.sep}`);
  if (!header) throw new BuildError('no onnxruntime_cxx_api.h in com.github.asus4.onnxruntime');
  const apiVersion = /#define ORT_API_VERSION (\d+)/.exec(fs.readFileSync(path.join(path.dirname(header), 'onnxruntime_c_api.h'), 'utf8'))?.[1];
  const libraryMinor = ortVersion.split('.')[1];
  if (apiVersion !== libraryMinor) throw new BuildError(`headers are ORT API ${apiVersion}, onnxruntime-node is ${ortVersion}`);
  const include = path.join(ORT_DIR, 'include');
  fs.rmSync(include, { recursive: true, force: true });
  fs.mkdirSync(include, { recursive: true });
  for (const name of fs.readdirSync(path.dirname(header)))
    if (name.endsWith('.h')) fs.copyFileSync(path.join(path.dirname(header), name), path.join(include, name));
  return include;
}

/** Node's own headers when the install has them (no download); otherwise node-gyp fetches them. */
function nodeDirArgs(): string[] {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include/node/node_api.h')) ? [`--nodedir=${prefix}`] : [];
}

function build(): string {
  if (process.platform !== 'linux' || process.arch !== 'x64') throw new BuildError(`only Linux x64 is supported, not ${process.platform} ${process.arch}`);
  const { libDir, version } = onnxruntimeCore();
  const include = extractHeaders(version);
  const releaseDir = path.join(NATIVE_DIR, 'build/Release');
  // $ORIGIN: the addon finds the library relative to itself, so the tree can move (device machines).
  const rpath = `'$$ORIGIN/${path.relative(releaseDir, libDir)}'`;
  // Its include_dir is relative to the working folder.
  const addonApi = path.resolve(require('node-addon-api').include_dir as string);
  const variables = { ort_include_dir: include, ort_lib_dir: libDir, ort_rpath: rpath, addon_api_dir: addonApi };
  fs.writeFileSync(path.join(ORT_DIR, 'ort.gypi'), `${JSON.stringify({ variables }, null, 2)}\n`);
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  const result = spawnSync(process.execPath, [gyp, 'rebuild', '-j', '2', ...nodeDirArgs()], { cwd: NATIVE_DIR, encoding: 'utf8' });
  fs.writeFileSync(LOG, `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ? String(result.error) : ''}`);
  if (result.status !== 0) throw new BuildError(`node-gyp failed (exit ${result.status}), see ${path.relative(ROOT, LOG)}`);
  const addon = path.join(releaseDir, 'native_session.node');
  // Loading proves the link to libonnxruntime.so.1 resolves, in a child so a crash stays there.
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)})`], { encoding: 'utf8' });
  if (load.status !== 0) throw new BuildError(`built but does not load: ${(load.stderr || '').trim().split('\n')[0]}`);
  return `native session: built ${path.relative(ROOT, addon)} against onnxruntime-node ${version}`;
}

const strict = process.argv.includes('--strict');
const started = Date.now();
try {
  console.log(`${build()} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} catch (error) {
  const reason = error instanceof BuildError || error instanceof OnnxruntimeCoreError ? error.message : String(error);
  console.log(`native session: not built (${reason}); the JS session (--runtime js) still serves`);
  if (strict) process.exitCode = 1;
}
