import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MISTRAL_7B_V01_JSON as MISTRAL_7B_V01 } from '../reference/test-models';
import { ConfigError, configFromHuggingFace } from './config';

const FIXTURES = process.env.FIXTURES_DIR ?? resolve(process.cwd(), '../shared/fixtures');

function expectConfigError(json: unknown, fragment: string): void {
  expect(() => configFromHuggingFace(json)).toThrow(ConfigError);
  expect(() => configFromHuggingFace(json)).toThrow(fragment);
}

describe('configFromHuggingFace', () => {
  it('maps Mistral 7B v0.1 to our names, deriving head_dim from hidden_size / heads', () => {
    expect(configFromHuggingFace(MISTRAL_7B_V01)).toEqual({
      architecture: 'MistralForCausalLM',
      vocabSize: 32000,
      hiddenSize: 4096,
      intermediateSize: 14336,
      layerCount: 32,
      queryHeadCount: 32,
      keyValueHeadCount: 8,
      headDim: 128,
      ropeTheta: 10000,
      rmsNormEps: 1e-5,
      maxPositions: 32768,
      slidingWindow: 4096,
      bosTokenId: 1,
      eosTokenId: 2,
      tieWordEmbeddings: false,
    });
  });

  it('maps the stories260k fixture, with an explicit head_dim and no window', () => {
    const json = JSON.parse(readFileSync(resolve(FIXTURES, 'stories260k/config.json'), 'utf-8'));
    const config = configFromHuggingFace(json);
    expect(config).toMatchObject({ hiddenSize: 64, headDim: 8, queryHeadCount: 8, keyValueHeadCount: 4, layerCount: 5, vocabSize: 512, slidingWindow: null });
    const swa = configFromHuggingFace(JSON.parse(readFileSync(resolve(FIXTURES, 'stories260k-swa16/config.json'), 'utf-8')));
    expect(swa.slidingWindow).toBe(16);
  });

  it('applies Hugging Face defaults for optional keys', () => {
    const { num_key_value_heads: _kv, rope_theta: _theta, rms_norm_eps: _eps, sliding_window: _w, max_position_embeddings: _m, ...rest } = MISTRAL_7B_V01;
    const config = configFromHuggingFace({ ...rest, eos_token_id: [2, 32000] });
    expect(config.keyValueHeadCount).toBe(32);
    expect(config.ropeTheta).toBe(10000);
    expect(config.rmsNormEps).toBe(1e-6);
    expect(config.slidingWindow).toBeNull();
    expect(config.maxPositions).toBe(4096);
    expect(config.eosTokenId).toBe(2);
  });

  it('names the key at fault', () => {
    expectConfigError({ ...MISTRAL_7B_V01, hidden_size: 0 }, '"hidden_size"');
    expectConfigError({ ...MISTRAL_7B_V01, vocab_size: '32000' }, '"vocab_size"');
    expectConfigError({ ...MISTRAL_7B_V01, num_key_value_heads: 5 }, '"num_key_value_heads"');
    expectConfigError({ ...MISTRAL_7B_V01, sliding_window: -1 }, '"sliding_window"');
    expectConfigError({ ...MISTRAL_7B_V01, rope_theta: -1 }, '"rope_theta"');
    expectConfigError({ ...MISTRAL_7B_V01, head_dim: 7 }, '"head_dim"');
    expectConfigError({ ...MISTRAL_7B_V01, hidden_act: 'gelu' }, '"hidden_act"');
    expectConfigError({ ...MISTRAL_7B_V01, rope_scaling: { type: 'linear', factor: 2 } }, '"rope_scaling"');
    expectConfigError({ ...MISTRAL_7B_V01, num_attention_heads: 24 }, '"hidden_size" / "num_attention_heads"');
  });

  it('rejects unsupported architectures and non-objects', () => {
    expectConfigError({ ...MISTRAL_7B_V01, architectures: ['MixtralForCausalLM'] }, 'MixtralForCausalLM');
    expectConfigError(null, 'JSON object');
    expectConfigError('hello', 'JSON object');
  });
});
