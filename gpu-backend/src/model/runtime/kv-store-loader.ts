// Chooses and loads the KV store (and so the session) for an engine: host arrays, device-resident
// session outputs (WebGPU) or the native session's in-place cache (--runtime native), with the layout
// options each one needs.

import type { AttentionKind } from '../graph/graph-attention';
import type { WeightSource } from '../graph/model-graph';
import type { EngineOptions } from './engine-types';
import type { EngineTuning } from './engine-tuning';
import { HostKvStore } from './host-kv-store';
import type { KvStore } from './kv-store';
import { NativeKvStore } from './native-kv-store';
import { ResidentKvStore } from './resident-kv-store';
import type { SequenceSlotsOptions } from './sequence-slots';

export interface ResolvedStoreOptions {
  attention: AttentionKind;
  int4AccuracyLevel: number;
  int4BlockSize: number;
  kvType: 'float32' | 'float16';
  /** The compute type's cache element type: the only one the resident and native caches keep. */
  computeKvType: 'float32' | 'float16';
}

export class KvStoreConfigError extends Error {
  override name = 'KvStoreConfigError';
}

/** The store for `options` and the layout to lay its rows out with. */
export async function loadKvStore(
  source: WeightSource,
  options: EngineOptions & EngineTuning,
  resolved: ResolvedStoreOptions,
  layout: SequenceSlotsOptions,
): Promise<{ store: KvStore; layout: SequenceSlotsOptions }> {
  const runtime = options.runtime ?? 'js';
  const resident = runtime === 'js' && (options.residentKvCache ?? options.executionProvider === 'webgpu');
  if ((resident || runtime === 'native') && resolved.kvType !== resolved.computeKvType) {
    const where = runtime === 'native' ? 'the native session' : 'the device-resident cache';
    throw new KvStoreConfigError(`kvCacheDtype ${options.kvCacheDtype} needs the host KV cache; ${where} keeps the compute type`);
  }
  const common = {
    executionProvider: options.executionProvider,
    intraOpThreads: options.intraOpThreads,
    format: options.dtype,
    computeType: resolved.computeKvType,
    int4AccuracyLevel: resolved.int4AccuracyLevel,
    int4BlockSize: resolved.int4BlockSize,
    cacheDir: options.onnxCacheDir,
    checkpointDir: options.modelDir,
    externalDataThresholdBytes: options.externalDataThresholdBytes,
  };
  if (runtime === 'native') {
    if (options.attention !== undefined && options.attention !== 'fused') {
      throw new KvStoreConfigError(`the native session runs fused attention (GroupQueryAttention), not ${options.attention}`);
    }
    return { store: await NativeKvStore.load(source, layout, common), layout: NativeKvStore.layoutOf(layout) };
  }
  if (resident) {
    return { store: await ResidentKvStore.load(source, { ...common, attention: resolved.attention, profilePrefix: options.profilePrefix }), layout };
  }
  const store = await HostKvStore.load(source, layout, {
    ...common,
    attention: resolved.attention,
    kvType: resolved.kvType,
    reserveKvMemory: options.reserveKvMemory,
    profilePrefix: options.profilePrefix,
  });
  return { store, layout };
}
