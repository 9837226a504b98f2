// Which session serves when --runtime is not given: the one that measured faster where it holds no more
// memory and supports what was asked for. On CUDA only the native session keeps the KV cache on the
// device. On the CPU the native session decodes faster (docs/bench/peer.md) and its cache occupies
// memory only where tokens are, but it keeps every position of a sequence, where the JS session's ring
// keeps the last W: so the JS session stays where a sliding window is shorter than the longest
// sequence, where the cache type differs from the compute type (only the host cache converts), and with
// speculative decoding, whose drafts the JS session verifies inside the batched decode run while the
// native one (GQA takes S > 1 over a past only at batch 1) runs each sequence's verification alone.

import type { ModelConfig } from '../checkpoint/config';
import { type ExecutionProvider, type KvCacheDtype, type SessionRuntime, type WeightFormat, computeTypeOf, kvCacheElementType } from './engine-types';
import { NativeUnavailableError, loadNativeAddon } from './native-session';

export interface RuntimeChoice {
  runtime: SessionRuntime;
  /** Why, for the start-up line. */
  reason: string;
}

export function chooseRuntime(
  model: Pick<ModelConfig, 'slidingWindow'>,
  asked: { executionProvider: ExecutionProvider; dtype: WeightFormat; kvCacheDtype: KvCacheDtype; maxModelLen: number; speculative: boolean },
  addonLoads: () => string | null = nativeAddonProblem,
): RuntimeChoice {
  if (asked.executionProvider === 'cuda') return { runtime: 'native', reason: 'the native session keeps the CUDA KV cache on the device' };
  if (asked.executionProvider === 'webgpu') return { runtime: 'js', reason: 'the native session runs the cpu and cuda providers' };
  const computeType = computeTypeOf(asked.dtype, asked.executionProvider);
  if (kvCacheElementType(computeType, asked.kvCacheDtype) !== computeType)
    return { runtime: 'js', reason: `--kv-cache-dtype ${asked.kvCacheDtype} needs the JS session's host cache` };
  if (asked.speculative) return { runtime: 'js', reason: 'it verifies speculative drafts inside the batched decode run' };
  const window = model.slidingWindow;
  if (window !== null && window < asked.maxModelLen)
    return {
      runtime: 'js',
      reason: `its ring keeps ${window} positions per sequence (the sliding window); the native cache would keep all ${asked.maxModelLen}`,
    };
  const problem = addonLoads();
  if (problem) return { runtime: 'js', reason: problem };
  return { runtime: 'native', reason: 'it decodes faster on the CPU than the JS session' };
}

/** Null when the addon loads, else why not. */
function nativeAddonProblem(): string | null {
  try {
    loadNativeAddon();
    return null;
  } catch (error) {
    if (error instanceof NativeUnavailableError) return error.message;
    throw error;
  }
}
