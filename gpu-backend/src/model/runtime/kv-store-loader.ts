// Chooses and loads the KV store (and so the session) for an engine: host arrays, device-resident
// session outputs (WebGPU) or the native session's in-place cache (--runtime native), with the layout
// options each one needs.

import type { WeightSource } from '../graph/model-graph';
import type { EngineOptions } from './engine-types';
import type { EngineTuning } from './engine-tuning';
import { HostKvStore } from './host-kv-store';
import type { KvStore } from './kv-store';
import { NativeKvStore } from './native-kv-store';
import { ResidentKvStore } from './resident-kv-store';
import type { SequenceSlotsOptions } from './sequence-slots';
import type { ModelSpec, StoreLoad } from './model-spec';

export class KvStoreConfigError extends Error {
  override name = 'KvStoreConfigError';
}

/** The store for `options` and the layout to lay its rows out with. */
export async function loadKvStore(
  source: WeightSource,
  options: EngineOptions & EngineTuning,
  spec: ModelSpec,
  layout: SequenceSlotsOptions,
): Promise<{ store: KvStore; layout: SequenceSlotsOptions }> {
  const runtime = options.runtime ?? 'js';
  const resident = runtime === 'js' && (options.residentKvCache ?? options.executionProvider === 'webgpu');
  if ((resident || runtime === 'native') && spec.kvType !== spec.computeType) {
    const where = runtime === 'native' ? 'the native session' : 'the device-resident cache';
    throw new KvStoreConfigError(`kvCacheDtype ${options.kvCacheDtype} needs the host KV cache; ${where} keeps the compute type`);
  }
  const load: StoreLoad = {
    spec,
    session: {
      executionProvider: options.executionProvider,
      intraOpThreads: options.intraOpThreads,
      cudaGraphs: runtime === 'native' && (options.cudaGraphs ?? options.executionProvider === 'cuda'),
      profilePrefix: options.profilePrefix,
    },
    files: { cacheDir: options.onnxCacheDir, checkpointDir: options.modelDir, externalDataThresholdBytes: options.externalDataThresholdBytes },
  };
  if (runtime === 'native') {
    if (options.attention !== undefined && options.attention !== 'fused') {
      throw new KvStoreConfigError(`the native session runs fused attention (GroupQueryAttention), not ${options.attention}`);
    }
    return { store: await NativeKvStore.load(source, layout, load), layout: NativeKvStore.layoutOf(layout) };
  }
  if (resident) {
    return { store: await ResidentKvStore.load(source, load), layout };
  }
  const store = await HostKvStore.load(source, layout, { ...load, reserveKvMemory: options.reserveKvMemory });
  return { store, layout };
}
