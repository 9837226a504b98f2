import { MISTRAL_7B_V01_JSON } from '../model/reference/test-models';
import { describe, expect, it } from 'vitest';
import { configFromHuggingFace } from '../model/checkpoint/config';
import { weightBytes } from '../model/graph/weight-bytes';
import { kvBytesPerSequence, sequencesForBudget } from './kv-budget';

const MISTRAL_7B_V01 = configFromHuggingFace(MISTRAL_7B_V01_JSON);

describe('KV budget', () => {
  it('counts 128 KiB per token for Mistral 7B in fp16, bounded by the rolling buffer', () => {
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768 })).toBe(128 * 1024 * 4095);
    expect(kvBytesPerSequence({ config: { ...MISTRAL_7B_V01, slidingWindow: null }, dtype: 'fp16', maxModelLen: 8192 })).toBe(128 * 1024 * 8192);
    // fp32 and int4 weights keep an fp32 cache unless --kv-cache-dtype fp16 asks for half.
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'int4', maxModelLen: 32768 })).toBe(2 * 128 * 1024 * 4095);
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'int4', maxModelLen: 32768, kvCacheDtype: 'fp16' })).toBe(128 * 1024 * 4095);
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'fp32', maxModelLen: 32768, kvCacheDtype: 'auto' })).toBe(2 * 128 * 1024 * 4095);
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 1000 })).toBe(128 * 1024 * 1000);
    // The native session keeps every position (window or not) plus a spare slot.
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768, kvCacheDtype: 'auto', runtime: 'native' })).toBe(128 * 1024 * 32769);
    expect(
      sequencesForBudget({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 8192, kvCacheDtype: 'auto', runtime: 'native' }, 10 * 128 * 1024 * 8193, 16)
        .maxSequences,
    ).toBe(10);
    // Speculative drafts widen the ring by k_max slots (sequence-slots.ts); without a window nothing changes.
    expect(kvBytesPerSequence({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768, draftSlots: 4 })).toBe(128 * 1024 * 4099);
    expect(kvBytesPerSequence({ config: { ...MISTRAL_7B_V01, slidingWindow: null }, dtype: 'fp16', maxModelLen: 8192, draftSlots: 4 })).toBe(128 * 1024 * 8192);
  });

  it('puts Mistral 7B at ~7.24B parameters (14.5 GB in fp16)', () => {
    expect(weightBytes(MISTRAL_7B_V01, 'fp16') / 2).toBeGreaterThan(7.2e9);
    expect(weightBytes(MISTRAL_7B_V01, 'fp16') / 2).toBeLessThan(7.3e9);
  });

  it('fits as many sequences as the budget holds, between 2 and the ceiling', () => {
    const perSequence = 128 * 1024 * 4095;
    expect(sequencesForBudget({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768 }, 10 * perSequence + 1, 16).maxSequences).toBe(10);
    expect(sequencesForBudget({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768 }, 100 * perSequence, 16).maxSequences).toBe(16);
    expect(sequencesForBudget({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768 }, 1, 16).maxSequences).toBe(2);
    expect(sequencesForBudget({ config: MISTRAL_7B_V01, dtype: 'fp16', maxModelLen: 32768 }, 10 * perSequence, 16).reason).toMatch(/10 fit, using 10/);
  });
});
