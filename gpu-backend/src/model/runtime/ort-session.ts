// The only module that imports onnxruntime-node: creates the InferenceSession and runs it on plain
// typed arrays, so the engine, the cache and the tests never see ort.Tensor.

import ort from 'onnxruntime-node';
import type { ExecutionProvider } from './engine-types';

export type TensorData = Float32Array | Uint16Array | Int32Array | BigInt64Array | Uint8Array;
export type FeedType = 'float32' | 'float16' | 'int32' | 'int64' | 'bool';

export interface Feed {
  type: FeedType;
  data: TensorData;
  dims: number[];
}

export interface OrtSessionOptions {
  executionProvider: ExecutionProvider;
  intraOpThreads: number;
  /** Outputs left on the device (WebGPU IO binding, 'gpu-buffer'); every other output is downloaded. */
  deviceOutputs?: readonly string[];
  /** Writes an ONNX Runtime profile (per-op times) with this file prefix; endProfiling() names the file. */
  profilePrefix?: string;
}

/**
 * An output kept in device memory (WebGPU buffer): it can only be fed back into a run of the same
 * device (the Node binding cannot download it) and must be disposed when no longer fed.
 */
export class DeviceTensor {
  constructor(
    /** @internal the binding's gpu-buffer tensor */
    readonly tensor: ort.Tensor,
  ) {}

  get type(): FeedType {
    return this.tensor.type as FeedType;
  }

  get dims(): readonly number[] {
    return this.tensor.dims;
  }

  /** Bytes of device memory behind the tensor. */
  get byteLength(): number {
    const elementBytes = this.type === 'float16' ? 2 : this.type === 'int64' ? 8 : 4;
    return this.dims.reduce((a, b) => a * b, 1) * elementBytes;
  }

  dispose(): void {
    this.tensor.dispose();
  }
}

export interface DeviceRunResult {
  host: Record<string, TensorData>;
  device: Record<string, DeviceTensor>;
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
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly deviceOutputs: ReadonlySet<string>,
  ) {}

  /** `model`: ONNX bytes (small models, inline weights) or a path (external data resolved beside it). */
  static async create(model: Uint8Array | string, options: OrtSessionOptions): Promise<OrtSession> {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: providers(options.executionProvider),
      intraOpNumThreads: options.intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    };
    const deviceOutputs = new Set(options.deviceOutputs ?? []);
    if (deviceOutputs.size > 0) {
      if (options.executionProvider !== 'webgpu') throw new OrtSessionError('device-resident outputs need the webgpu execution provider');
      sessionOptions.preferredOutputLocation = Object.fromEntries([...deviceOutputs].map((name) => [name, 'gpu-buffer']));
    }
    if (options.profilePrefix) {
      sessionOptions.enableProfiling = true;
      sessionOptions.profileFilePrefix = options.profilePrefix;
    }
    try {
      const session =
        typeof model === 'string' ? await ort.InferenceSession.create(model, sessionOptions) : await ort.InferenceSession.create(model, sessionOptions);
      return new OrtSession(session, deviceOutputs);
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

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /**
   * Runs with device-resident tensors: feeds may be DeviceTensors from an earlier run; outputs named in
   * `deviceOutputs` come back as DeviceTensors (no copy), the rest as host arrays. Every graph output is
   * fetched, in graph order: the 1.30 binding pairs output locations with fetch positions, so fetching
   * a subset would put the wrong outputs on the device.
   */
  async runWithDevice(feeds: Record<string, Feed | DeviceTensor>): Promise<DeviceRunResult> {
    const tensors: Record<string, ort.Tensor> = {};
    for (const [name, feed] of Object.entries(feeds)) {
      tensors[name] = feed instanceof DeviceTensor ? feed.tensor : new ort.Tensor(feed.type, feed.data, feed.dims);
    }
    const results = await this.session.run(tensors, [...this.session.outputNames]);
    const out: DeviceRunResult = { host: {}, device: {} };
    for (const name of this.session.outputNames) {
      if (this.deviceOutputs.has(name)) out.device[name] = new DeviceTensor(results[name]);
      else out.host[name] = results[name].data as TensorData;
    }
    return out;
  }

  /** Ends profiling (profilePrefix): the binding writes `<prefix>_<date>.json` in the working folder. */
  endProfiling(): void {
    this.session.endProfiling();
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
