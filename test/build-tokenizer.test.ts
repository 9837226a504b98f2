// The tokenizer asset builder (edge/scripts/build-tokenizer.ts) as operators run it: from a model folder with
// tokenizer.model or tokenizer.json, the default from mistral-tokenizer-js (v1, or v3 with --builtin v3), a bad folder, the up-to-date no-op.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { buildTokenizerAsset, resolveSource } from '../edge/scripts/build-tokenizer.ts';
import { Tokenizer } from '../edge/src/tokenizer/tokenizer.ts';
import type { TokenizerAsset } from '../edge/src/tokenizer/tokenizer-asset.ts';

const FIXTURES = join(process.env.FIXTURES_DIR ?? resolve(process.cwd(), '../shared/fixtures'), 'tokenizer');
const SCRIPT = resolve(process.cwd(), 'edge/scripts/build-tokenizer.ts');
const TSX = resolve(process.cwd(), 'node_modules/.bin/tsx');
const run = promisify(execFile);
const scratch = mkdtempSync(join(tmpdir(), 'build-tokenizer-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A model folder in the temp dir whose tokenizer.model links to a fixture (nothing copied into the repo). */
function modelFolder(name: string, fixture: string): string {
  const folder = mkdtempSync(join(scratch, `${name}-`));
  symlinkSync(join(FIXTURES, fixture), join(folder, 'tokenizer.model'));
  return folder;
}

const SAMPLES = ['Hello world!', '  two  spaces', '<s>[INST] typed [/INST]</s>', '镇🦙Ꙋ\n\ttab', 'ax\n####\nboo', `${' '.repeat(40)}x`];
const spmV1 = () => Tokenizer.fromSentencePieceModel(new Uint8Array(readFileSync(join(FIXTURES, 'tokenizer.model.v1'))));
const spmV3 = () => Tokenizer.fromSentencePieceModel(new Uint8Array(readFileSync(join(FIXTURES, 'mistral_instruct_tokenizer_240323.model.v3'))));

describe('build-tokenizer', () => {
  it('picks tokenizer.model first, then tokenizer.json, and explains a bad folder', () => {
    expect(resolveSource(modelFolder('a', 'tokenizer.model.v1')).kind).toBe('sentencepiece');
    expect(resolveSource(join(FIXTURES, 'generated-v1')).kind).toBe('hf-tokenizer-json');
    expect(resolveSource(undefined).kind).toBe('mistral-tokenizer-js');
    expect(resolveSource(undefined, 'v3').kind).toBe('mistral-tokenizer-js-v3');
    expect(() => resolveSource(join(scratch, 'missing'))).toThrow(/not a directory/);
    expect(() => resolveSource(FIXTURES.replace(/tokenizer$/, 'stories260k'))).toThrow(/neither tokenizer.model nor tokenizer.json/);
  });

  it('Hugging Face tokenizer.json (added_tokens dropped) encodes like the SentencePiece model, v1 and v3', async () => {
    for (const [dir, reference, version] of [
      ['generated-v1', spmV1(), 'v1'],
      ['generated-v3', spmV3(), 'v3'],
    ] as const) {
      const asset = await buildTokenizerAsset(resolveSource(join(FIXTURES, dir)));
      expect(asset.templateVersion).toBe(version);
      const tokenizer = Tokenizer.fromAsset(asset);
      for (const text of SAMPLES) expect(tokenizer.encode(text), `${dir} ${JSON.stringify(text)}`).toEqual(reference.encode(text));
      expect(tokenizer.encode('<s>')).toEqual(reference.encode('<s>'));
    }
  });

  it('the CLI writes the asset, is a no-op when up to date, and exits non-zero on a bad folder', async () => {
    const out = join(scratch, 'out', 'tokenizer.json');
    const folder = modelFolder('cli', 'mistral_instruct_tokenizer_240323.model.v3');
    const first = await run(TSX, [SCRIPT, '--model-dir', folder, '--out', out]);
    expect(first.stdout).toMatch(/written.*v3, 32768 pieces/);
    const asset = JSON.parse(readFileSync(out, 'utf8')) as TokenizerAsset;
    expect([asset.format, asset.templateVersion, asset.pieces[3], asset.types[3]]).toEqual(['mistral-spm/1', 'v3', '[INST]', 3]);
    const writtenAt = statSync(out).mtimeMs;
    const second = await run(TSX, [SCRIPT, '--model-dir', folder, '--out', out]);
    expect(second.stdout).toMatch(/up to date/);
    expect(statSync(out).mtimeMs).toBe(writtenAt);
    const failure = await run(TSX, [SCRIPT, '--model-dir', join(scratch, 'nope'), '--out', out]).catch((error: { code: number; stderr: string }) => error);
    expect('code' in failure && failure.code).toBe(1);
    expect((failure as { stderr: string }).stderr).toMatch(/build-tokenizer: --model-dir .*nope: not a directory/);
  });

  it('the CLI writes the built-in v3 asset with --builtin v3 and refuses other versions or a model folder beside it', async () => {
    const out = join(scratch, 'builtin', 'tokenizer.json');
    const written = await run(TSX, [SCRIPT, '--builtin', 'v3', '--out', out]);
    expect(written.stdout).toMatch(/written.*v3, 32768 pieces, from mistral-tokenizer-js-v3/);
    const asset = JSON.parse(readFileSync(out, 'utf8')) as TokenizerAsset;
    expect([asset.pieces[5], asset.types[5], asset.pieces[771]]).toEqual(['[TOOL_CALLS]', 3, '<0x00>']);
    const refused = async (args: string[]) => {
      const failure = await run(TSX, [SCRIPT, ...args, '--out', out]).catch((error: { code: number; stderr: string }) => error);
      return 'stderr' in failure ? failure.stderr : 'accepted';
    };
    expect(await refused(['--builtin', 'v2'])).toMatch(/--builtin must be v1 or v3, got v2/);
    expect(await refused(['--builtin', 'v3', '--model-dir', scratch])).toMatch(/--builtin and --model-dir exclude each other/);
  });
});
