import { describe, expect, it } from 'vitest';
import { chooseRuntime } from './runtime-choice';

const CPU = { executionProvider: 'cpu', dtype: 'fp32', kvCacheDtype: 'auto', maxModelLen: 8192, speculative: false } as const;
const loads = () => null;

describe('chooseRuntime (the session when --runtime is not given)', () => {
  it('cuda takes the native session, webgpu the JS one', () => {
    expect(chooseRuntime({ slidingWindow: 4096 }, { ...CPU, executionProvider: 'cuda' }, loads).runtime).toBe('native');
    expect(chooseRuntime({ slidingWindow: null }, { ...CPU, executionProvider: 'webgpu' }, loads).runtime).toBe('js');
  });

  it('the cpu takes the native session unless a window shorter than the longest sequence, a converting cache or a missing addon says otherwise', () => {
    expect(chooseRuntime({ slidingWindow: null }, CPU, loads)).toEqual({ runtime: 'native', reason: 'it decodes faster on the CPU than the JS session' });
    // A window at least as long as any sequence never binds: both keep every position.
    expect(chooseRuntime({ slidingWindow: 8192 }, CPU, loads).runtime).toBe('native');
    expect(chooseRuntime({ slidingWindow: 4096 }, CPU, loads)).toEqual({
      runtime: 'js',
      reason: 'its ring keeps 4096 positions per sequence (the sliding window); the native cache would keep all 8192',
    });
    expect(chooseRuntime({ slidingWindow: 4096 }, { ...CPU, maxModelLen: 4096 }, loads).runtime).toBe('native');
    expect(chooseRuntime({ slidingWindow: null }, { ...CPU, kvCacheDtype: 'fp16' }, loads)).toEqual({
      runtime: 'js',
      reason: "--kv-cache-dtype fp16 needs the JS session's host cache",
    });
    // int4 computes in fp32 on the cpu: an fp32 cache is its own type.
    expect(chooseRuntime({ slidingWindow: null }, { ...CPU, dtype: 'int4', kvCacheDtype: 'fp32' }, loads).runtime).toBe('native');
    expect(chooseRuntime({ slidingWindow: null }, { ...CPU, speculative: true }, loads)).toEqual({
      runtime: 'js',
      reason: 'it verifies speculative drafts inside the batched decode run',
    });
    expect(chooseRuntime({ slidingWindow: null }, CPU, () => 'the native session addon is not built')).toEqual({
      runtime: 'js',
      reason: 'the native session addon is not built',
    });
  });
});
