// The only module that imports onnxruntime-node: creates the InferenceSession and runs it on plain
// typed arrays, so the engine, the cache and the tests never see ort.Tensor.

import ort from 'onnxruntime-node';
import type { ExecutionProvider } from './engine-types';

export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array;
export type FeedType = 'float32' | 'float16' | 'int32' | 'int64';

export interface Feed {
  type: FeedType;
  data: TensorData;
  dims: number[];
}

export interface OrtSessionOptions {
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
}

export class OrtSessionError extends Error {
  override name = 'OrtSessionError';
}

function providers(provider: ExecutionProvider): ort.InferenceSession.SessionOptions['executionProviders'] {
  if (provider === 'cuda') return [{ name: 'cuda', deviceId: 0 }, 'cpu'];
  if (provider === 'webgpu') return ['webgpu', 'cpu'];
  return ['cpu'];
}

export class OrtSession {
  private constructor(private readonly session: ort.InferenceSession) {}

  /** `model`: ONNX bytes (small models, inline weights) or a path (external data resolved beside it). */
  static async create(model: Uint8Array | string, options: OrtSessionOptions): Promise<OrtSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: providers(options.executionProvider),
      intraOpNumThreads: options.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    };
    try {
      const session =
        typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
      return new OrtSession(session);
    } catch (error) {
      throw new OrtSessionError(`onnxruntime could not load the model graph: ${(error as Error).message}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  /**
   * Runs the graph and returns the requested outputs. Feeds are wrapped without copying (views are
   * fine); every fetched output is a fresh copy made by the binding, so fetch only small outputs.
   */
  async run(feeds: Record<string, Feed>, outputNames: string[]): Promise<Record<string, TensorData>> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) tensors[name] = new ort.Tensor(feed.type, feed.data, feed.dims);
    const results = await this.session.run(tensors, outputNames);
    const out: Record<string, TensorData> = {};
    for (const name of outputNames) out[name] = results[name].data as TensorData;
    return out;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
