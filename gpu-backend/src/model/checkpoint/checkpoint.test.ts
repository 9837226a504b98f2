import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Checkpoint } from './checkpoint';
import { writeRandomModel } from './default-model';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from './float-bits';
import { SafetensorsFile, writeSafetensors } from './safetensors';

const FIXTURES = process.env.FIXTURES_DIR ?? resolve(process.cwd(), '../shared/fixtures');
const root = mkdtempSync(join(tmpdir(), 'checkpoint-test-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const TINY = {
  architectures: ['MistralForCausalLM'],
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  sliding_window: null,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
};

let tinyDir: string;
let tinyTensors: Map<string, { shape: number[]; values: Float32Array }>;

beforeAll(async () => {
  tinyDir = await writeRandomModel(join(root, 'tiny'), TINY, 7);
  const file = await SafetensorsFile.open(join(tinyDir, 'model.safetensors'));
  tinyTensors = new Map();
  for (const name of file.tensorNames()) tinyTensors.set(name, { shape: file.info(name).shape, values: await file.readFloat32(name) });
  await file.close();
});

/** A checkpoint folder with the tiny config (optionally changed) and the given tensors in one file. */
async function folderWith(name: string, tensors: Map<string, { shape: number[]; values: Float32Array }>, config: object = TINY): Promise<string> {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
  await writeSafetensors(
    join(dir, 'model.safetensors'),
    [...tensors].map(([n, t]) => ({ name: n, shape: t.shape, dtype: 'F32' as const, data: t.values })),
  );
  return dir;
}

async function openError(dir: string): Promise<string> {
  try {
    await (await Checkpoint.open(dir)).close();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error(`expected Checkpoint.open(${dir}) to fail`);
}

describe('Checkpoint', () => {
  it('opens the stories260k fixture and reads tensors with their config shapes', async () => {
    const checkpoint = await Checkpoint.open(join(FIXTURES, 'stories260k'));
    expect(checkpoint.config.headDim).toBe(8);
    expect(checkpoint.tensorShape('model.layers.4.self_attn.k_proj.weight')).toEqual([32, 64]);
    expect(checkpoint.tensorShape('model.layers.0.mlp.down_proj.weight')).toEqual([64, 172]);
    expect(checkpoint.has('lm_head.weight')).toBe(true);
    expect(checkpoint.has('model.layers.5.input_layernorm.weight')).toBe(false);
    expect(checkpoint.outputWeightName()).toBe('lm_head.weight');
    const norm = await checkpoint.readFloat32('model.norm.weight');
    expect(norm.length).toBe(64);
    const raw = await checkpoint.readRaw('model.norm.weight');
    expect(raw.dtype).toBe('F32');
    expect(new Float32Array(raw.bytes.buffer, raw.bytes.byteOffset, 64)).toEqual(norm);
    await checkpoint.close();
  });

  it('opens a sharded checkpoint through model.safetensors.index.json', async () => {
    const dir = join(root, 'sharded');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY));
    const names = [...tinyTensors.keys()];
    const shards = [names.slice(0, 7), names.slice(7)];
    const weightMap: Record<string, string> = {};
    for (const [i, shard] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(
        join(dir, file),
        shard.map((n) => ({ name: n, shape: tinyTensors.get(n)!.shape, dtype: 'F32' as const, data: tinyTensors.get(n)!.values })),
      );
      for (const n of shard) weightMap[n] = file;
    }
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const checkpoint = await Checkpoint.open(dir);
    expect(checkpoint.tensorNames().sort()).toEqual([...names].sort());
    for (const name of names) expect(await checkpoint.readFloat32(name)).toEqual(tinyTensors.get(name)!.values);
    await checkpoint.close();

    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, extra: 'model-00003-of-00003.safetensors' } }));
    expect(await openError(dir)).toContain('model-00003-of-00003.safetensors');
    writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, [names[0]]: 'model-00002-of-00002.safetensors' } }));
    expect(await openError(dir)).toContain(`weight_map puts tensor "${names[0]}" in model-00002-of-00002.safetensors`);
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": 3}');
    expect(await openError(dir)).toContain('"weight_map"');
  });

  it('reads BF16 and F16 checkpoints as float32 with the expected rounding, and raw 16-bit bytes', async () => {
    const name = 'model.layers.1.mlp.up_proj.weight';
    const f32 = tinyTensors.get(name)!.values;
    for (const [dtype, toBits, fromBits] of [
      ['BF16', float32ToBfloat16Bits, bfloat16BitsToFloat32],
      ['F16', float32ToFloat16Bits, float16BitsToFloat32],
    ] as const) {
      const dir = await writeRandomModel(join(root, `tiny-${dtype}`), TINY, 7, { dtype });
      const checkpoint = await Checkpoint.open(dir);
      expect(checkpoint.tensorDtype(name)).toBe(dtype);
      expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf-8')).torch_dtype).toBe(dtype === 'BF16' ? 'bfloat16' : 'float16');
      const values = await checkpoint.readFloat32(name);
      expect(values).toEqual(Float32Array.from(f32, (v) => fromBits(toBits(v))));
      const raw = await checkpoint.readRaw(name);
      expect(raw.bytes.byteLength).toBe(f32.length * 2);
      expect(new Uint16Array(raw.bytes.buffer, raw.bytes.byteOffset, f32.length)[5]).toBe(toBits(f32[5]));
      await checkpoint.close();
    }
  });

  it('names the folder when config.json or the weights are missing', async () => {
    const empty = join(root, 'empty');
    mkdirSync(empty);
    expect(await openError(empty)).toMatch(new RegExp(`${empty}.*config\\.json`));
    writeFileSync(join(empty, 'config.json'), JSON.stringify(TINY));
    expect(await openError(empty)).toMatch(new RegExp(`${empty}.*no model\\.safetensors`));
    expect(await openError(join(root, 'does-not-exist'))).toContain('does-not-exist');
  });

  it('names the missing tensor', async () => {
    const tensors = new Map(tinyTensors);
    tensors.delete('model.layers.1.self_attn.v_proj.weight');
    expect(await openError(await folderWith('missing-tensor', tensors))).toContain(
      'missing tensor "model.layers.1.self_attn.v_proj.weight" (expected shape [16, 32])',
    );
  });

  it('names the tensor, the actual and the implied shape when config.json disagrees', async () => {
    const dir = await folderWith('wrong-shape', tinyTensors, { ...TINY, intermediate_size: 64 });
    expect(await openError(dir)).toContain('tensor "model.layers.0.mlp.gate_proj.weight" has shape [48, 32], config.json implies [64, 32]');
    const kvDir = await folderWith('wrong-kv', tinyTensors, { ...TINY, num_key_value_heads: 4 });
    expect(await openError(kvDir)).toContain('"model.layers.0.self_attn.k_proj.weight" has shape [16, 32], config.json implies [32, 32]');
  });

  it('names the key for an unsupported architecture or bad config value', async () => {
    const dir = await folderWith('gpt2', tinyTensors, { ...TINY, architectures: ['GPT2LMHeadModel'] });
    const message = await openError(dir);
    expect(message).toContain('GPT2LMHeadModel');
    expect(message).toContain(join(dir, 'config.json'));
    expect(await openError(await folderWith('bad-vocab', tinyTensors, { ...TINY, vocab_size: -3 }))).toContain('"vocab_size"');
  });

  it('names the tensor stored in an unsupported dtype', async () => {
    const dir = await folderWith('int8', new Map(), TINY);
    const entries: string[] = [];
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const [name, { shape, values }] of tinyTensors) {
      const int8 = name === 'model.layers.0.self_attn.q_proj.weight';
      const bytes = int8 ? Buffer.alloc(values.length) : Buffer.from(values.buffer, values.byteOffset, values.byteLength);
      entries.push(`"${name}":{"dtype":"${int8 ? 'I8' : 'F32'}","shape":[${shape}],"data_offsets":[${offset},${offset + bytes.byteLength}]}`);
      chunks.push(bytes);
      offset += bytes.byteLength;
    }
    const header = Buffer.from(`{${entries.join(',')}}`);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.byteLength));
    writeFileSync(join(dir, 'model.safetensors'), Buffer.concat([prefix, header, ...chunks]));
    expect(await openError(dir)).toContain('"model.layers.0.self_attn.q_proj.weight" has unsupported dtype I8');
  });

  it('refuses a tensor present in two shards', async () => {
    const dir = await folderWith('duplicate', tinyTensors);
    await writeSafetensors(join(dir, 'extra.safetensors'), [{ name: 'model.norm.weight', shape: [32], dtype: 'F32', data: new Float32Array(32) }]);
    writeFileSync(
      join(dir, 'model.safetensors.index.json'),
      JSON.stringify({ weight_map: { 'model.norm.weight': 'extra.safetensors', 'lm_head.weight': 'model.safetensors' } }),
    );
    expect(await openError(dir)).toContain('"model.norm.weight" is in both');
  });

  it('accepts a tied checkpoint without lm_head.weight', async () => {
    const tensors = new Map(tinyTensors);
    tensors.delete('lm_head.weight');
    const untied = await folderWith('untied-missing-head', tensors);
    expect(await openError(untied)).toContain('missing tensor "lm_head.weight"');
    const checkpoint = await Checkpoint.open(await folderWith('tied', tensors, { ...TINY, tie_word_embeddings: true }));
    expect(checkpoint.outputWeightName()).toBe('model.embed_tokens.weight');
    await checkpoint.close();
  });
});
