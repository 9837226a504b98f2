// The only module that loads the native session addon (gpu-backend/native): a session over ONNX
// Runtime's C++ API that holds the KV cache itself, bound in place as past and present (shared-buffer
// GroupQueryAttention). Loading fails with one line (NativeUnavailableError) when the addon was not
// built; the JS session (ort-session.ts) does not depend on it.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GraphBuilder } from '../graph/graph-builder';
import { concatChunks, encodeOnnxModel } from '../graph/onnx-proto-writer';
import type { Feed } from './ort-session';

/** Where npm ci's postinstall builds the addon. */
export const NATIVE_ADDON_PATH = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../native/build/Release/native_session.node');

export type NativeProvider = 'cpu' | 'cuda';

export interface NativeCacheSpec {
  /** Graph inputs (past_key.L, ...) and the outputs bound to the same tensors (present_key.L, ...), pairwise. */
  pastNames: string[];
  presentNames: string[];
  rows: number;
  keyValueHeads: number;
  slots: number;
  headDim: number;
  elementType: 'float32' | 'float16';
  /** Decode may run fixed (NativeStep.fixed): the session then keeps the staging graphs those runs copy through. */
  fixedRuns?: boolean;
}

export interface NativeOptions {
  provider: NativeProvider;
  intraOpThreads: number;
  deviceId?: number;
  /** cuda only: every fixed run is captured as a CUDA graph, one per window of rows (ONNX Runtime's enable_cuda_graph). */
  cudaGraphs?: boolean;
}

/** A feed of one run; `host`: in a fixed run, an input the graph reads from host memory (total_sequence_length). */
export type NativeFeed = Feed & { name: string; host?: boolean };

export interface NativeStep {
  feeds: NativeFeed[];
  logitsName: string;
  /** Host buffer the logits rows are written into: [logitsRows, vocab] at its start. */
  logits: Float32Array;
  logitsRows: number;
  vocab: number;
  /** The run's batch is cache rows [firstRow, firstRow + batch). */
  firstRow: number;
  batch: number;
  /**
   * A fixed run: the batch is cache rows [firstRow, firstRow + batch) (a window), each feed is copied into a
   * buffer of the window's that keeps its address, and the logits rows are copied out; every run of a window must feed
   * the same names and sizes. What a CUDA graph replays; on the CPU the same path, without capture.
   */
  fixed?: boolean;
}

/** The addon's class as it is exported (gpu-backend/native/src/addon.cc). */
interface AddonSession {
  allocateCache(spec: NativeCacheSpec & { rowCopyModel: Uint8Array; uploadModel?: Uint8Array; downloadModel?: Uint8Array }): void;
  run(step: NativeStep): Promise<void>;
  copyRow(from: number, to: number, slots: number): void;
  discardRow(row: number, keepSlots: number): void;
  release(): void;
  readonly inputNames: string[];
  readonly outputNames: string[];
  readonly cacheBytes: number;
  readonly residentCacheBytes: number;
  readonly fixedWindows: number;
}

interface Addon {
  NativeSession: new (model: string | Uint8Array, options: NativeOptions) => AddonSession;
  ortApiVersion: number;
}

export class NativeUnavailableError extends Error {
  override name = 'NativeUnavailableError';
}

export class NativeSessionError extends Error {
  override name = 'NativeSessionError';
}

let addon: Addon | null = null;
let addonPath = NATIVE_ADDON_PATH;

/**
 * Loads the process's one addon from `file` instead: for a bundle that no longer sits in this tree (the
 * device check's check.mjs). Before the first session only.
 */
export function useNativeAddonAt(file: string): void {
  if (addon && file !== addonPath) throw new NativeUnavailableError(`the native session addon is already loaded from ${addonPath}`);
  addonPath = file;
}

/** The addon, loaded once; NativeUnavailableError (one line) when it is missing or cannot load. */
export function loadNativeAddon(): Addon {
  if (addon) return addon;
  if (!fs.existsSync(addonPath)) {
    throw new NativeUnavailableError(`the native session addon is not built (${addonPath}); run npm run build:native, or use --runtime js`);
  }
  try {
    addon = createRequire(import.meta.url)(addonPath) as Addon;
  } catch (error) {
    throw new NativeUnavailableError(`the native session addon does not load: ${(error as Error).message.split('\n')[0]}; use --runtime js`);
  }
  return addon;
}

export class NativeSession {
  private constructor(private readonly session: AddonSession) {}

  /** `model`: ONNX bytes or a path (external data resolved beside it). CUDA fails here when its provider or CUDA is missing. */
  static create(model: string | Uint8Array, options: NativeOptions): NativeSession {
    const { NativeSession: Native } = loadNativeAddon();
    try {
      return new NativeSession(new Native(model, options));
    } catch (error) {
      // ONNX Runtime's message names the file that did not load; the hint says how to fix it.
      const hint = options.provider === 'cuda' ? ' (npm run cuda:provider -- --check lists what is missing)' : '';
      throw new NativeSessionError(`native session (${options.provider}): ${(error as Error).message.trim()}${hint}`);
    }
  }

  get inputNames(): readonly string[] {
    return this.session.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.session.outputNames;
  }

  /** Bytes of the KV cache tensors (0 before allocateCache). */
  get cacheBytes(): number {
    return this.session.cacheBytes;
  }

  /** A host cache's bytes backed by memory now (it is reserved, and pages in where written); a device cache's all. */
  get residentCacheBytes(): number {
    return this.session.residentCacheBytes;
  }

  /** Windows of rows that have had a fixed run (each one binding; a CUDA graph each with cudaGraphs). */
  get fixedWindows(): number {
    return this.session.fixedWindows;
  }

  /** Allocates the cache tensors [rows, keyValueHeads, slots, headDim] once, from the session's allocator. */
  allocateCache(spec: NativeCacheSpec): void {
    const staging = spec.fixedRuns ? { uploadModel: uploadGraph(), downloadModel: downloadGraph() } : {};
    this.session.allocateCache({ ...spec, rowCopyModel: rowCopyGraph(spec), ...staging });
  }

  /** One run with the cache rows bound in place; resolves once the logits are in `step.logits`. */
  run(step: NativeStep): Promise<void> {
    return this.session.run(step);
  }

  /** Copies the first `slots` slots of cache row `from` into row `to`, every layer, on the session's provider. */
  copyRow(from: number, to: number, slots: number): void {
    this.session.copyRow(from, to, slots);
  }

  /**
   * Row `row` holds only its first `keepSlots` slots now: a host cache gives the memory of the rest back
   * (it reads as zeros again); a device cache keeps it.
   */
  discardRow(row: number, keepSlots: number): void {
    this.session.discardRow(row, keepSlots);
  }

  release(): void {
    this.session.release();
  }
}

/**
 * The addon's row copies: one Identity per KV head, each head's first slots of one row (a contiguous block,
 * [n, headDim]) into another row's. Run by ONNX Runtime on the session's provider, so a copy between rows
 * of a device cache never leaves the device and needs no CUDA call of the addon's own.
 */
function rowCopyGraph(spec: NativeCacheSpec): Uint8Array {
  const g = new GraphBuilder(null);
  for (let head = 0; head < spec.keyValueHeads; head++) {
    const source = g.input(`src_${head}`, spec.elementType, ['n', spec.headDim]);
    g.nodes.push({ opType: 'Identity', name: `copy_${head}`, inputs: [source], outputs: [`dst_${head}`], attributes: {} });
    g.output(`dst_${head}`, spec.elementType, ['n', spec.headDim]);
  }
  return concatChunks(encodeOnnxModel(g.build('row-copy')));
}

/**
 * A fixed run's upload: its int64 feeds (ids, positions, logits rows) and its int32 feeds (seqlens_k),
 * each gathered into one host block, copied by ONNX Runtime into the window's device blocks.
 */
function uploadGraph(): Uint8Array {
  const g = new GraphBuilder(null);
  for (const [input, output, type] of [
    ['i64', 'o64', 'int64'],
    ['i32', 'o32', 'int32'],
  ] as const) {
    g.input(input, type, ['n']);
    g.nodes.push({ opType: 'Identity', name: `upload_${type}`, inputs: [input], outputs: [output], attributes: {} });
    g.output(output, type, ['n']);
  }
  return concatChunks(encodeOnnxModel(g.build('fixed-upload')));
}

/** A fixed run's download: the logits rows wanted, from the window's device buffer into the host one. */
function downloadGraph(): Uint8Array {
  const g = new GraphBuilder(null);
  g.input('f32', 'float32', ['n']);
  g.nodes.push({ opType: 'Identity', name: 'download', inputs: ['f32'], outputs: ['of32'], attributes: {} });
  g.output('of32', 'float32', ['n']);
  return concatChunks(encodeOnnxModel(g.build('fixed-download')));
}
