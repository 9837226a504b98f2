// Where onnxruntime-node's Linux x64 core (libonnxruntime.so.1) lives, and its version: the addon links
// to it, and the CUDA provider has to sit beside it. One lookup for both build-native.ts and
// install-cuda-provider.ts.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

export class OnnxruntimeCoreError extends Error {}

const require = createRequire(import.meta.url);

export function onnxruntimeCore(): { libDir: string; version: string } {
  let packageDir: string;
  try {
    packageDir = path.dirname(require.resolve('onnxruntime-node/package.json'));
  } catch {
    throw new OnnxruntimeCoreError('onnxruntime-node is not installed');
  }
  const version = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8')).version as string;
  const bin = path.join(packageDir, 'bin');
  for (const napi of fs.readdirSync(bin)) {
    const libDir = path.join(bin, napi, 'linux/x64');
    if (fs.existsSync(path.join(libDir, 'libonnxruntime.so.1'))) return { libDir, version };
  }
  throw new OnnxruntimeCoreError(`no linux/x64/libonnxruntime.so.1 under ${bin}`);
}
