// Test support: grammar vocabularies from the real SentencePiece models in ../shared/fixtures, an independent
// decoder (mistral-tokenizer-js; v3 text ids are v1 ids + 768), a helper that walks a grammar state
// through a text by its own masks, and the v1 vocabulary as a model folder.

import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mistralTokenizer from 'mistral-tokenizer-js';
import { readSentencePieceModel } from '../../../../shared/sentencepiece-model';
import { DEFAULT_MODEL_CONFIG } from '../../model/checkpoint/default-model';
import { GrammarCompilerCache } from './grammar-compiler';
import type { GrammarState } from './grammar-state';
import { vocabularyOf, type Vocabulary } from './model-vocabulary';

export const FIXTURE_TOKENIZERS = fileURLToPath(new URL('../../../../../shared/fixtures/tokenizer/', import.meta.url));
export const V3_MODEL_FILE = `${FIXTURE_TOKENIZERS}mistral_instruct_tokenizer_240323.model.v3`;
const V3_TEXT_OFFSET = 768;

export function fixtureVocabulary(version: 'v1' | 'v3'): Vocabulary & { pieces: string[]; types: number[] } {
  const file = version === 'v1' ? `${FIXTURE_TOKENIZERS}tokenizer.model.v1` : V3_MODEL_FILE;
  const model = readSentencePieceModel(new Uint8Array(readFileSync(file)));
  return { ...vocabularyOf({ ...model, source: file }, model.pieces.length, model.eosTokenId), pieces: model.pieces, types: model.types };
}

/**
 * A fresh temporary folder holding the v1 vocabulary as a model folder (config.json + tokenizer.model, no weights:
 * for the fake engine); `label` starts its name. The caller removes it.
 */
export async function vocabularyFolder(label: string): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), `${label}-`));
  await writeFile(join(folder, 'config.json'), JSON.stringify(DEFAULT_MODEL_CONFIG));
  await copyFile(`${FIXTURE_TOKENIZERS}tokenizer.model.v1`, join(folder, 'tokenizer.model'));
  return folder;
}

const compilers = new Map<string, Promise<GrammarCompilerCache>>();
export function fixtureCompilers(version: 'v1' | 'v3'): Promise<GrammarCompilerCache> {
  if (!compilers.has(version)) compilers.set(version, GrammarCompilerCache.create(fixtureVocabulary(version)));
  return compilers.get(version)!;
}

/** Text of ids, by mistral-tokenizer-js (not by the pieces the backend read). Control ids are skipped. */
export function decodeIds(tokenIds: number[], version: 'v1' | 'v3'): string {
  const offset = version === 'v3' ? V3_TEXT_OFFSET : 0;
  return mistralTokenizer.decode(
    tokenIds.map((id) => id - offset).filter((id) => id >= 3),
    false,
    false,
  );
}

export function isAllowed(mask: Int32Array, tokenId: number): boolean {
  return ((mask[tokenId >> 5] >>> (tokenId & 31)) & 1) === 1;
}

export function allowedIds(mask: Int32Array, vocabSize: number): number[] {
  const ids: number[] = [];
  for (let id = 0; id < vocabSize; id++) if (isAllowed(mask, id)) ids.push(id);
  return ids;
}

/**
 * Feeds `text` to the state: at each step the allowed id whose piece (▁ as a space) is the longest head of
 * what is left. Returns the ids; throws when no allowed piece fits (the grammar refuses the text).
 */
export async function feedText(state: GrammarState, text: string, pieces: string[]): Promise<number[]> {
  const ids: number[] = [];
  let rest = text;
  while (rest.length > 0) {
    const mask = (await state.mask())!;
    let best = -1;
    for (let id = 0; id < pieces.length; id++) {
      const piece = pieces[id].replaceAll('▁', ' ');
      if (isAllowed(mask, id) && piece.length > 0 && !/^<0x/.test(pieces[id]) && rest.startsWith(piece) && (best < 0 || piece.length > pieces[best].length))
        best = id;
    }
    if (best < 0) throw new Error(`no allowed piece continues ${JSON.stringify(rest)}`);
    state.accept(best);
    ids.push(best);
    rest = rest.slice(pieces[best].length);
  }
  return ids;
}

/** Compile limit of the check thread in tests whose subject is not the limit: `npm test` runs files in parallel on
 * a shared 2-vCPU machine, where a 32k-id compile can take longer than the 2 s the server allows. */
export const TEST_TIME_LIMIT_MS = 60_000;
