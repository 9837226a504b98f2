// The one model writer: builds the ONNX graph for a checkpoint once and caches it (model.onnx +
// model.onnx.data) in a folder keyed by config, graph options (weight format, attention kind, cache I/O,
// ...), builder version and the checkpoint files' sizes and mtimes, so a restart loads instead of
// rebuilding. Nothing is written into the checkpoint.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BuildProgress } from './build-progress';
import { type WeightFormat, computeTypeOf } from '../runtime/engine-types';
import { type AttentionKind, type CacheIo, chooseAttention } from './graph-attention';
import { ExternalDataWriter } from './graph-builder';
import { GRAPH_BUILDER_VERSION, type WeightSource, buildModelGraph } from './model-graph';
import { concatChunks, encodeOnnxModel } from './onnx-proto-writer';
import { INT4_BLOCK_SIZE } from './quantize-int4';
import { weightBytes as estimatedWeightBytes } from './weight-bytes';

/** Above this estimated weight size the weights go to model.onnx.data (protobuf stops at 2 GiB). */
const EXTERNAL_DATA_THRESHOLD = 1.5 * 2 ** 30;
/** Builds of models above this estimated weight size show their progress (test models stay quiet). */
const PROGRESS_THRESHOLD = 32 * 2 ** 20;

export interface StoreOptions {
  format: WeightFormat;
  /** Activation type; default fp16 for fp16 weights, else fp32 (GraphOptions.computeType). */
  computeType?: 'float32' | 'float16';
  attention?: AttentionKind;
  int4AccuracyLevel?: number;
  /** MatMulNBits block_size (default INT4_BLOCK_SIZE). */
  int4BlockSize?: number;
  /** KV cache element type; default the compute type. */
  kvType?: 'float32' | 'float16';
  /** Default 'new-rows' (GraphOptions.cacheIo). */
  cacheIo?: CacheIo;
  /** Folder for cached graphs; null builds in memory every time (small models, tests). */
  cacheDir: string | null;
  /** The checkpoint folder, fingerprinted by file sizes and mtimes. */
  checkpointDir: string;
  /** Estimated weight bytes above which weights go external (tests lower it). */
  externalDataThresholdBytes?: number;
  /** Show the build's progress on stderr (default for models above 32 MiB of weights), or through this function. */
  progress?: boolean | ((text: string) => void);
}

export interface PreparedModel {
  /** ONNX bytes (in memory) or the path of the cached model.onnx. */
  model: Uint8Array | string;
  attention: AttentionKind;
  computeType: 'float32' | 'float16';
  cacheType: 'float32' | 'float16';
  fromCache: boolean;
}

function checkpointFingerprint(dir: string): string[] {
  if (!fs.existsSync(dir)) return []; // in-memory weights (tests): config and options alone key the cache
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.safetensors') || name.endsWith('.json'))
    .sort()
    .map((name) => {
      const stat = fs.statSync(path.join(dir, name));
      return `${name}:${stat.size}:${stat.mtimeMs}`;
    });
}

function folderBytes(folder: string): number {
  return fs.readdirSync(folder).reduce((sum, name) => sum + fs.statSync(path.join(folder, name)).size, 0);
}

function writeChunks(filePath: string, chunks: Uint8Array[]): void {
  const fd = fs.openSync(filePath, 'w');
  try {
    for (const chunk of chunks) fs.writeSync(fd, chunk);
  } finally {
    fs.closeSync(fd);
  }
}

export async function prepareOnnxModel(source: WeightSource, options: StoreOptions): Promise<PreparedModel> {
  const attention = options.attention ?? chooseAttention(source.config.headDim);
  const computeType = options.computeType ?? computeTypeOf(options.format);
  const cacheType = options.kvType ?? computeType;
  const graphOptions = {
    format: options.format,
    // Left out when it is the format's default, so the keys of existing graphs stay what they were.
    ...(computeType !== computeTypeOf(options.format) ? { computeType } : {}),
    attention,
    int4AccuracyLevel: options.int4AccuracyLevel,
    int4BlockSize: options.int4BlockSize,
    kvType: cacheType,
    // Left out unless set, so the keys of 'new-rows' graphs stay what they were.
    ...(options.cacheIo !== undefined && options.cacheIo !== 'new-rows' ? { cacheIo: options.cacheIo } : {}),
  };
  const build = async (writer: ExternalDataWriter | null, onLayer?: (done: number) => void) =>
    (await buildModelGraph(source, graphOptions, writer, onLayer)).model;
  const weightBytes = estimatedWeightBytes(source.config, options.format, options.int4BlockSize);
  const external = weightBytes > (options.externalDataThresholdBytes ?? EXTERNAL_DATA_THRESHOLD);
  if (options.cacheDir === null) {
    if (external) throw new Error('a model this large needs an ONNX cache folder for its external weight file');
    return { model: concatChunks(encodeOnnxModel(await build(null))), attention, computeType, cacheType, fromCache: false };
  }
  const keyed = { config: source.config, graphOptions, builder: GRAPH_BUILDER_VERSION, files: checkpointFingerprint(options.checkpointDir) };
  const key = createHash('sha256').update(JSON.stringify(keyed)).digest('hex').slice(0, 16);
  // Folder name: what it is for, then the key. Builds that differ only in key (a newer builder, edited
  // weights) replace older ones, so the cache does not grow by a model's size per change.
  const family = `${path.basename(path.resolve(options.checkpointDir))}-${options.cacheIo === 'resident' ? 'resident-kv-' : ''}${options.format}-${attention}-a${options.int4AccuracyLevel ?? 0}-${options.format === 'int4' ? `b${options.int4BlockSize ?? INT4_BLOCK_SIZE}-` : ''}${cacheType === computeType ? '' : 'kv16-'}${options.cacheIo === 'shared-buffer' ? 'shared-' : ''}`;
  const folder = path.join(options.cacheDir, `${family}${key}`);
  const modelPath = path.join(folder, 'model.onnx');
  const showProgress = options.progress ?? weightBytes > PROGRESS_THRESHOLD;
  const progress = showProgress
    ? new BuildProgress('model conversion', source.config.layerCount + 1, typeof showProgress === 'function' ? showProgress : undefined)
    : null;
  if (fs.existsSync(modelPath)) {
    progress?.line(`loading the cached ONNX graph from ${folder}`);
    return { model: modelPath, attention, computeType, cacheType, fromCache: true };
  }
  progress?.line(
    `building the ONNX graph of ${options.checkpointDir} (${options.format}, ~${(weightBytes / 2 ** 30).toFixed(2)} GiB of weights, ` +
      `${source.config.layerCount} layers): reading the checkpoint and converting layer by layer, once; later starts load the cache`,
  );

  // Build into a private temp folder, then rename: a concurrent loader never sees half a model.
  fs.mkdirSync(options.cacheDir, { recursive: true });
  const staging = fs.mkdtempSync(path.join(options.cacheDir, '.building-'));
  try {
    const writer = external ? new ExternalDataWriter(path.join(staging, 'model.onnx.data'), 'model.onnx.data') : null;
    try {
      const layers = source.config.layerCount;
      const model = await build(writer, (done) => progress?.update(done, done === 0 ? 'embedding' : done <= layers ? `layer ${done}/${layers}` : 'LM head'));
      progress?.line(`writing model.onnx${writer ? ' and its external weights (model.onnx.data)' : ''}`);
      writeChunks(path.join(staging, 'model.onnx'), encodeOnnxModel(model));
    } finally {
      writer?.close();
    }
    try {
      fs.renameSync(staging, folder);
    } catch (error) {
      if (!fs.existsSync(modelPath)) throw error; // another process won the race: use its copy
      fs.rmSync(staging, { recursive: true, force: true });
    }
    for (const entry of fs.readdirSync(options.cacheDir)) {
      if (entry.startsWith(family) && path.join(options.cacheDir, entry) !== folder)
        fs.rmSync(path.join(options.cacheDir, entry), { recursive: true, force: true });
    }
  } catch (error) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw error;
  }
  progress?.finish(`ONNX graph cached in ${folder} (${(folderBytes(folder) / 2 ** 30).toFixed(2)} GiB; MODEL_ONNX_CACHE_DIR moves the cache)`);
  return { model: modelPath, attention, computeType, cacheType, fromCache: false };
}
