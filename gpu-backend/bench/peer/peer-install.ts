// What a llama.cpp row needs on disk, shared by bench:peer and bench:model --verify: node-llama-cpp's
// prebuilt CPU library (installed on demand into this folder, never by the root npm ci) and a GGUF of
// the checkpoint under test, written beside it once.

import { execFileSync } from 'node:child_process';
import { existsSync, renameSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpointToGguf, type GgufFormat } from './checkpoint-to-gguf';

export const PEER_DIR = fileURLToPath(new URL('./', import.meta.url));
/** llama.cpp's counterpart of each of our weight formats (int4 at block 64 with fp32 scales and Q4_0 both store 0.5625 bytes per weight). */
export const GGUF_FORMAT: Record<string, GgufFormat> = { fp32: 'F32', int4: 'Q4_0' };
const TOKENIZER = path.resolve(PEER_DIR, '../../../../shared/fixtures/tokenizer/tokenizer.model.v1');

export function ensurePeerInstalled(): void {
  if (existsSync(path.join(PEER_DIR, 'node_modules/node-llama-cpp/package.json'))) return;
  console.log('installing node-llama-cpp 3.21.1 (prebuilt CPU binaries, no build, no downloads) into gpu-backend/bench/peer ...');
  execFileSync('npm', ['ci', '--omit=optional', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: PEER_DIR, stdio: 'inherit' });
}

/** The checkpoint's GGUF in `format`, rewritten when the weights are newer than it. */
export async function ensureGguf(modelDir: string, format: GgufFormat): Promise<string> {
  const file = path.join(modelDir, `peer-${format}.gguf`);
  const weights = path.join(modelDir, existsSync(path.join(modelDir, 'model.safetensors')) ? 'model.safetensors' : 'config.json');
  if (existsSync(file) && statSync(file).mtimeMs > statSync(weights).mtimeMs) return file;
  console.log(`writing ${file} ...`);
  await checkpointToGguf(modelDir, `${file}.tmp`, format, TOKENIZER);
  renameSync(`${file}.tmp`, file);
  return file;
}
