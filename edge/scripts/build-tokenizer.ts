// Writes edge/generated/tokenizer.json, the tokenizer asset the worker bundles. Sources, in order:
// `--model-dir DIR` with DIR/tokenizer.model (SentencePiece) or DIR/tokenizer.json (Hugging Face BPE), else the
// v1 vocabulary embedded in the npm package mistral-tokenizer-js (`--builtin v3`: that vocabulary with v3's
// reserved pieces, for the built-in v3 model). A no-op when the output is up to date.
//
//   tsx edge/scripts/build-tokenizer.ts [--model-dir DIR | --builtin v1|v3] [--out FILE] [--force]

import { createRequire } from 'node:module';
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseSentencePieceModel } from '../src/tokenizer/sentencepiece-model.ts';
import { detectTemplateVersion, PIECE_TYPE, type TokenizerAsset, validateTokenizerAsset } from '../src/tokenizer/tokenizer-asset.ts';
import { v3VocabularyFromV1 } from '../../shared/v3-vocabulary-from-v1.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const DEFAULT_OUT = resolve(HERE, '../generated/tokenizer.json');
// Bump when the asset layout or the derivation below changes, so stale outputs rebuild.
const BUILDER_VERSION = 1;
const BYTE_PIECE = /^<0x[0-9A-F]{2}>$/;
const WHITESPACE_ONLY = /^\u2581{2,}$/;
// Mistral's model scores its 15 whitespace-only pieces ("▁▁" to 16 "▁") all -1e9, below every other piece, so
// they merge leftmost first. A merge list cannot express that tie, so it is restored here: the scores then match
// tokenizer.model.v1 (encodes agreed without it too on every run length tried, up to 200).
const WHITESPACE_ONLY_SCORE = -1e9;

export interface BuildSource {
  kind: 'sentencepiece' | 'hf-tokenizer-json' | 'mistral-tokenizer-js' | 'mistral-tokenizer-js-v3';
  path: string;
}

/** The built-in vocabularies: v1 as npm ships it, or v3 derived from it. */
export type BuiltinVersion = 'v1' | 'v3';

export function resolveSource(modelDir: string | undefined, builtin: BuiltinVersion = 'v1'): BuildSource {
  if (modelDir === undefined) {
    const require = createRequire(import.meta.url);
    return { kind: builtin === 'v3' ? 'mistral-tokenizer-js-v3' : 'mistral-tokenizer-js', path: require.resolve('mistral-tokenizer-js') };
  }
  const dir = resolve(modelDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`--model-dir ${modelDir}: not a directory`);
  if (existsSync(join(dir, 'tokenizer.model'))) return { kind: 'sentencepiece', path: join(dir, 'tokenizer.model') };
  if (existsSync(join(dir, 'tokenizer.json'))) return { kind: 'hf-tokenizer-json', path: join(dir, 'tokenizer.json') };
  throw new Error(`--model-dir ${modelDir}: has neither tokenizer.model nor tokenizer.json`);
}

/** Scores from merge ranks: a piece scores minus the rank of the first merge producing it (earlier = higher). */
function scoresFromMerges(pieces: string[], types: number[], merges: Iterable<[string, string]>): number[] {
  const firstRank = new Map<string, number>();
  let rank = 0;
  for (const [left, right] of merges) {
    const merged = left + right;
    if (!firstRank.has(merged)) firstRank.set(merged, rank);
    rank++;
  }
  return pieces.map((piece, id) => {
    if (types[id] !== PIECE_TYPE.normal) return 0;
    if (WHITESPACE_ONLY.test(piece)) return WHITESPACE_ONLY_SCORE;
    const produced = firstRank.get(piece);
    // Pieces no merge produces are single characters (never a merge result), ranked after all merges.
    return produced !== undefined ? -produced : -(rank + id);
  });
}

async function fromMistralTokenizerJs(version: BuiltinVersion): Promise<TokenizerAsset> {
  // A variable specifier: the package ships no type declarations.
  const specifier = 'mistral-tokenizer-js';
  const { default: library } = (await import(specifier)) as { default: { vocabById: string[]; merges: Map<string, number> } };
  const pieces = library.vocabById;
  // Its merge map is keyed "left right" (pieces never hold a plain space) in priority order.
  const merges = [...library.merges.keys()].map((key): [string, string] => {
    const space = key.indexOf(' ');
    return [key.slice(0, space), key.slice(space + 1)];
  });
  const types: number[] = pieces.map((piece, id) =>
    id === 0 && piece === '<unk>'
      ? PIECE_TYPE.unknown
      : piece === '<s>' || piece === '</s>'
        ? PIECE_TYPE.control
        : BYTE_PIECE.test(piece)
          ? PIECE_TYPE.byte
          : PIECE_TYPE.normal,
  );
  const v1 = { pieces, types, scores: scoresFromMerges(pieces, types, merges) };
  if (version === 'v1') return assemble(v1.pieces, v1.scores, v1.types, 'npm:mistral-tokenizer-js');
  const v3 = v3VocabularyFromV1(v1);
  return assemble(v3.pieces, v3.scores, v3.types, 'npm:mistral-tokenizer-js + v3 reserved pieces');
}

interface HfTokenizerJson {
  added_tokens?: { id: number; content: string; special: boolean }[];
  model?: { type?: string; byte_fallback?: boolean; unk_token?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
}

function fromHfTokenizerJson(path: string): TokenizerAsset {
  const json = JSON.parse(readFileSync(path, 'utf8')) as HfTokenizerJson;
  const model = json.model;
  if (model?.type !== 'BPE') throw new Error(`${path}: model.type is ${model?.type}, need BPE`);
  if (model.byte_fallback !== true) throw new Error(`${path}: model.byte_fallback must be true`);
  if (!model.vocab || !model.merges) throw new Error(`${path}: model.vocab and model.merges are required`);
  const pieces: string[] = [];
  for (const [piece, id] of Object.entries(model.vocab)) pieces[id] = piece;
  if (pieces.length !== Object.keys(model.vocab).length) throw new Error(`${path}: vocab ids are not 0..n-1`);
  // added_tokens are not matched in user text (SentencePiece never turns typed "<s>" into a control id); they
  // only say which ids are control (special) or user-defined (not special) pieces.
  const types: number[] = pieces.map((piece) => (BYTE_PIECE.test(piece) ? PIECE_TYPE.byte : PIECE_TYPE.normal));
  for (const token of json.added_tokens ?? []) {
    if (pieces[token.id] !== token.content) continue;
    types[token.id] = token.content === model.unk_token ? PIECE_TYPE.unknown : token.special ? PIECE_TYPE.control : PIECE_TYPE.userDefined;
  }
  const merges = model.merges.map((merge): [string, string] => {
    if (Array.isArray(merge)) return merge;
    const space = merge.indexOf(' ');
    return [merge.slice(0, space), merge.slice(space + 1)];
  });
  return assemble(pieces, scoresFromMerges(pieces, types, merges), types, 'hf-tokenizer-json');
}

function assemble(pieces: string[], scores: number[], types: number[], source: string): TokenizerAsset {
  const idOf = (piece: string) => {
    const id = pieces.indexOf(piece);
    if (id < 0) throw new Error(`${source}: the vocabulary has no ${piece} piece`);
    return id;
  };
  return {
    format: 'mistral-spm/1',
    templateVersion: detectTemplateVersion(pieces, types),
    pieces,
    scores,
    types,
    bosTokenId: idOf('<s>'),
    eosTokenId: idOf('</s>'),
    unkTokenId: idOf('<unk>'),
    source,
  };
}

export async function buildTokenizerAsset(source: BuildSource): Promise<TokenizerAsset> {
  const asset =
    source.kind === 'sentencepiece'
      ? { ...parseSentencePieceModel(new Uint8Array(readFileSync(source.path))), source: 'sentencepiece-model' }
      : source.kind === 'hf-tokenizer-json'
        ? fromHfTokenizerJson(source.path)
        : await fromMistralTokenizerJs(source.kind === 'mistral-tokenizer-js-v3' ? 'v3' : 'v1');
  validateTokenizerAsset(asset);
  return asset;
}

/** What the output depends on: the source file and this builder's own code, by size and mtime. */
function stampFor(source: BuildSource): string {
  const files = [
    source.path,
    fileURLToPath(import.meta.url),
    resolve(HERE, '../src/tokenizer/sentencepiece-model.ts'),
    resolve(HERE, '../../shared/sentencepiece-model.ts'),
    resolve(HERE, '../src/tokenizer/tokenizer-asset.ts'),
    resolve(HERE, '../../shared/v3-vocabulary-from-v1.ts'),
  ];
  return JSON.stringify({ builder: BUILDER_VERSION, kind: source.kind, files: files.map((file) => [file, statSync(file).size, statSync(file).mtimeMs]) });
}

const USAGE = 'usage: npm run build:tokenizer -- [--model-dir DIR | --builtin v1|v3] [--out FILE] [--force]';

export async function main(argv: string[]): Promise<void> {
  let modelDir: string | undefined;
  let builtin: string | undefined;
  let out = DEFAULT_OUT;
  let force = false;
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index];
    if (arg === '--model-dir') modelDir = argv[++index];
    else if (arg === '--builtin') builtin = argv[++index];
    else if (arg === '--out') out = resolve(argv[++index]);
    else if (arg === '--force') force = true;
    else if (arg === '--help' || arg === '-h') {
      console.log(
        `${USAGE}\nWrites the tokenizer asset the edge worker bundles, from DIR/tokenizer.model or DIR/tokenizer.json\n(default: the Mistral v1 vocabulary of mistral-tokenizer-js; --builtin v3: that vocabulary with Mistral v3's\nreserved pieces, what the built-in v3 model uses). A no-op when the output is up to date.`,
      );
      return;
    } else throw new Error(`unknown argument ${arg} (${USAGE})`);
    if ((arg === '--model-dir' || arg === '--builtin' || arg === '--out') && argv[index] === undefined) throw new Error(`${arg} needs a value`);
  }
  if (builtin !== undefined && builtin !== 'v1' && builtin !== 'v3') throw new Error(`--builtin must be v1 or v3, got ${builtin}`);
  if (builtin !== undefined && modelDir !== undefined) throw new Error('--builtin and --model-dir exclude each other: a model folder brings its own tokenizer');
  const source = resolveSource(modelDir, builtin);
  const stampPath = `${out}.stamp`;
  const stamp = stampFor(source);
  if (!force && existsSync(out) && existsSync(stampPath) && readFileSync(stampPath, 'utf8') === stamp) {
    console.log(`tokenizer asset up to date: ${out}`);
    return;
  }
  const asset = await buildTokenizerAsset(source);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(`${out}.tmp`, JSON.stringify(asset));
  renameSync(`${out}.tmp`, out);
  writeFileSync(stampPath, stamp);
  console.log(`tokenizer asset written: ${out} (${asset.templateVersion}, ${asset.pieces.length} pieces, from ${source.kind} ${source.path})`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    console.error(`build-tokenizer: ${(error as Error).message}`);
    process.exit(1);
  });
}
