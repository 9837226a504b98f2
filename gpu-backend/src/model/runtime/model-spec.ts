// What a KV store is loaded with: the model spec (everything that shapes the ONNX graph), resolved once by
// the engine from its options; the session's provider and threads; where graphs are cached. A store adds
// only what is its own (the graph variant, the cache I/O, the host reservation).

import type { AttentionKind } from '../graph/graph-attention';
import type { ComputeType, ExecutionProvider, WeightFormat } from './engine-types';

export interface ModelSpec {
  format: WeightFormat;
  /** Activation type (computeTypeOf unless chosen). */
  computeType: ComputeType;
  /** KV cache element type (kvCacheElementType). */
  kvType: ComputeType;
  attention: AttentionKind;
  int4AccuracyLevel: number;
  int4BlockSize: number;
}

export interface SessionSpec {
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  /**
   * The native session's decode runs fixed per batch bucket (NativeKvStore), captured as CUDA graphs on
   * cuda; on the cpu the same path without capture.
   */
  cudaGraphs: boolean;
  /** File prefix for an ONNX Runtime per-op profile of the model session, written when it is released. */
  profilePrefix?: string;
}

export interface GraphFiles {
  /** Cached ONNX graphs; null builds in memory (small models, tests). */
  cacheDir: string | null;
  /** The checkpoint folder, part of the cache key. */
  checkpointDir: string;
  /** Estimated weight bytes above which the weights go to model.onnx.data (default 1.5 GiB). */
  externalDataThresholdBytes?: number;
}

export interface StoreLoad {
  spec: ModelSpec;
  session: SessionSpec;
  files: GraphFiles;
}
