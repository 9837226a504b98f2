// A Hugging Face checkpoint folder (config.json + one or sharded safetensors files), validated at open
// against the tensors the Mistral architecture needs; tensors are then read one at a time.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, configFromHuggingFace, type ModelConfig } from './config';
import { mistralTensors } from './mistral-tensors';
import { FLOAT_DTYPES, SafetensorsFile, type RawTensor } from './safetensors';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

const SINGLE_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';

async function readJson(path: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf-8');
  } catch (error) {
    throw new CheckpointError(`${what}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CheckpointError(`${path}: not valid JSON (${(error as Error).message})`);
  }
}

interface ShardList {
  files: string[];
  /** Tensor name -> file name, when the folder has an index. */
  weightMap?: Record<string, string>;
}

/** Safetensors file names of the folder: from the index's weight_map, else model.safetensors, else every *.safetensors. */
async function shardFiles(dir: string): Promise<ShardList> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    throw new CheckpointError(`checkpoint folder ${dir}: cannot list (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  if (entries.includes(INDEX_FILE)) {
    const index = (await readJson(join(dir, INDEX_FILE), `checkpoint folder ${dir}`)) as { weight_map?: unknown };
    const weightMap = index?.weight_map;
    if (typeof weightMap !== 'object' || weightMap === null) {
      throw new CheckpointError(`${join(dir, INDEX_FILE)}: missing "weight_map" object`);
    }
    const files = [...new Set(Object.values(weightMap as Record<string, unknown>))];
    const bad = files.find((file) => typeof file !== 'string' || file.includes('/') || file.includes('\\'));
    if (bad !== undefined) throw new CheckpointError(`${join(dir, INDEX_FILE)}: weight_map names an invalid file ${JSON.stringify(bad)}`);
    return { files: (files as string[]).sort(), weightMap: weightMap as Record<string, string> };
  }
  if (entries.includes(SINGLE_FILE)) return { files: [SINGLE_FILE] };
  const found = entries.filter((name) => name.endsWith('.safetensors')).sort();
  if (found.length === 0) throw new CheckpointError(`checkpoint folder ${dir}: no ${SINGLE_FILE}, ${INDEX_FILE} or other .safetensors file`);
  return { files: found };
}

/** configFromHuggingFace with the folder named in its errors (there may be several checkpoints in play). */
function parseConfig(path: string, json: unknown): ModelConfig {
  try {
    return configFromHuggingFace(json);
  } catch (error) {
    if (error instanceof ConfigError) throw new ConfigError(error.message.replace(/^config\.json:/, `${path}:`));
    throw error;
  }
}

export class Checkpoint {
  private constructor(
    readonly dir: string,
    readonly config: ModelConfig,
    /** Tensor name -> the open file holding it. */
    private readonly owners: Map<string, SafetensorsFile>,
    private readonly files: SafetensorsFile[],
  ) {}

  static async open(dir: string): Promise<Checkpoint> {
    const configPath = join(dir, 'config.json');
    const config = parseConfig(configPath, await readJson(configPath, `checkpoint folder ${dir}`));
    const { files: fileNames, weightMap } = await shardFiles(dir);
    const files: SafetensorsFile[] = [];
    try {
      for (const fileName of fileNames) files.push(await SafetensorsFile.open(join(dir, fileName)));
      const owners = new Map<string, SafetensorsFile>();
      for (const file of files) {
        for (const name of file.tensorNames()) {
          const previous = owners.get(name);
          if (previous) throw new CheckpointError(`checkpoint folder ${dir}: tensor "${name}" is in both ${previous.path} and ${file.path}`);
          owners.set(name, file);
        }
      }
      for (const [name, fileName] of Object.entries(weightMap ?? {})) {
        if (owners.get(name)?.path !== join(dir, fileName)) {
          throw new CheckpointError(`${join(dir, INDEX_FILE)}: weight_map puts tensor "${name}" in ${fileName}, which does not hold it`);
        }
      }
      const checkpoint = new Checkpoint(dir, config, owners, files);
      checkpoint.validate();
      return checkpoint;
    } catch (error) {
      await Promise.all(files.map((file) => file.close()));
      throw error;
    }
  }

  /** Every tensor the architecture reads must exist, as a float dtype, with the shape config.json implies. */
  private validate(): void {
    for (const spec of mistralTensors(this.config)) {
      const owner = this.owners.get(spec.name);
      if (!owner) throw new CheckpointError(`checkpoint folder ${this.dir}: missing tensor "${spec.name}" (expected shape [${spec.shape.join(', ')}])`);
      const { shape, dtype } = owner.info(spec.name);
      if (shape.length !== spec.shape.length || shape.some((dim, i) => dim !== spec.shape[i])) {
        throw new CheckpointError(`${owner.path}: tensor "${spec.name}" has shape [${shape.join(', ')}], config.json implies [${spec.shape.join(', ')}]`);
      }
      if (!(FLOAT_DTYPES as readonly string[]).includes(dtype)) {
        throw new CheckpointError(`${owner.path}: tensor "${spec.name}" has unsupported dtype ${dtype} (expected one of ${FLOAT_DTYPES.join(', ')})`);
      }
    }
  }

  private owner(name: string): SafetensorsFile {
    const owner = this.owners.get(name);
    if (!owner) throw new CheckpointError(`checkpoint folder ${this.dir}: no tensor "${name}"`);
    return owner;
  }

  tensorNames(): string[] {
    return [...this.owners.keys()];
  }

  has(name: string): boolean {
    return this.owners.has(name);
  }

  tensorShape(name: string): number[] {
    return [...this.owner(name).info(name).shape];
  }

  /** F32, F16 or BF16 for every tensor the architecture needs (checked at open). */
  tensorDtype(name: string): string {
    return this.owner(name).info(name).dtype;
  }

  /**
   * The output projection: lm_head.weight, or the embedding when tie_word_embeddings is set.
   * Callers should read weights through this name rather than hard-coding lm_head.
   */
  outputWeightName(): string {
    return this.config.tieWordEmbeddings && !this.has('lm_head.weight') ? 'model.embed_tokens.weight' : 'lm_head.weight';
  }

  async readFloat32(name: string): Promise<Float32Array> {
    return this.owner(name).readFloat32(name);
  }

  async readRaw(name: string): Promise<RawTensor> {
    return this.owner(name).readRaw(name);
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((file) => file.close()));
  }
}
