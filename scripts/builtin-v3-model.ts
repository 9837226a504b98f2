// The built-in v3 model (`npm start -- --model builtin-v3`): a generated random checkpoint with Mistral v0.3's
// vocabulary and the tokenizer asset the edge bundles for it, both made once from what npm installs.

import path from 'node:path';
import { BUILTIN_V3_MODEL_DIR, ensureBuiltinV3Model } from '../gpu-backend/src/model/checkpoint/default-model';
import { main as buildTokenizer } from '../edge/scripts/build-tokenizer';
import { REPO_ROOT } from './stack';

/** Beside the default asset, not over it: a v1 stack bundling edge/generated/tokenizer.json keeps its tokenizer. */
const TOKENIZER_ASSET = path.join(REPO_ROOT, 'edge', 'generated', 'builtin-v3', 'tokenizer.json');

export interface BuiltinV3Model {
  modelDir: string;
  /** For StackOptions.tokenizerAsset. */
  tokenizerAsset: string;
}

/** Generates what is missing (a few seconds the first time; a no-op after). */
export async function prepareBuiltinV3Model(): Promise<BuiltinV3Model> {
  const modelDir = await ensureBuiltinV3Model(BUILTIN_V3_MODEL_DIR);
  await buildTokenizer(['--builtin', 'v3', '--out', TOKENIZER_ASSET]);
  return { modelDir, tokenizerAsset: TOKENIZER_ASSET };
}
