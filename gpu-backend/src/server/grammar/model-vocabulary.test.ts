// The grammar vocabulary of a model folder without a tokenizer file: a generated folder gets the built-in v1
// (32000 ids) or v3 (32768) vocabulary, equal to the real tokenizer.model's; any other folder gets a reason.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BUILTIN_V3_MODEL_CONFIG, DEFAULT_MODEL_CONFIG, writeRandomModel } from '../../model/checkpoint/default-model';
import { readModelVocabulary, type Vocabulary } from './model-vocabulary';
import { fixtureVocabulary } from './test-vocabularies';

/** Small layers, the real vocabulary width: the vocabulary depends on vocab_size and the generator mark only. */
const TINY = { hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16 };

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'model-vocabulary-'));
});
afterAll(() => rm(root, { recursive: true, force: true }));

async function generated(name: string, config: Record<string, unknown>): Promise<Vocabulary | { error: string }> {
  return readModelVocabulary(await writeRandomModel(join(root, name), { ...config, ...TINY }, 1));
}

describe('readModelVocabulary on a generated folder', () => {
  it('v3 (vocab 32768): the pieces of tokenizer.model.v3 and its [TOOL_CALLS] id', async () => {
    const vocabulary = await generated('v3', BUILTIN_V3_MODEL_CONFIG);
    if ('error' in vocabulary) throw new Error(vocabulary.error);
    const reference = fixtureVocabulary('v3');
    expect(vocabulary.vocabSize).toBe(32768);
    expect(vocabulary.encodedVocab).toEqual(reference.encodedVocab);
    expect(vocabulary.toolCallsTokenId).toBe(5);
    expect(vocabulary.eosTokenId).toBe(2);
  });

  it('v1 (vocab 32000): the pieces of tokenizer.model.v1 and no tool-call id', async () => {
    const vocabulary = await generated('v1', DEFAULT_MODEL_CONFIG);
    if ('error' in vocabulary) throw new Error(vocabulary.error);
    expect(vocabulary.encodedVocab).toEqual(fixtureVocabulary('v1').encodedVocab);
    expect(vocabulary.toolCallsTokenId).toBeNull();
  });

  it('another vocabulary size has no built-in vocabulary: a reason instead', async () => {
    expect(await generated('other', { ...DEFAULT_MODEL_CONFIG, vocab_size: 4096 })).toEqual({
      error: 'the model folder has no tokenizer.model or tokenizer.json',
    });
  });
});
