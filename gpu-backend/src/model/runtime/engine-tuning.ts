// Engine knobs for benchmarks, tests and the device check. The served backend never sets them
// (BackendConfig has none), so each has a default chosen for serving in engine.ts.

import type { AttentionKind } from '../graph/graph-attention';

export interface EngineTuning {
  /** Force the attention implementation; default chooseAttention(headDim, executionProvider): hybrid on the CPU. */
  attention?: AttentionKind;
  /** MatMulNBits accuracy_level: 0 computes in fp32 (exact against dequantized weights), 4 (default) in int8. */
  int4AccuracyLevel?: number;
  /**
   * Fused graphs: decode through GroupQueryAttention too (default false: the in-place branch, which does
   * not copy the cache each step; true for webgpu). Prefill chunks always use GQA. For comparisons in the benchmark.
   */
  gqaDecode?: boolean;
  /** Estimated weight bytes above which the cached graph keeps weights in model.onnx.data (default 1.5 GiB). */
  externalDataThresholdBytes?: number;
  /** Keep the KV cache in session output tensors fed back each step (default: true for webgpu, where they stay on the GPU). */
  residentKvCache?: boolean;
}
