// The resident KV cache (the WebGPU path's bookkeeping and graph), run here with host tensors on the
// CPU provider: index arithmetic against hand-worked examples, and the engine against the host-cache engine.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { randomModelWeights } from '../checkpoint/default-model';
import { Engine } from './engine';
import { type BatchPlan, buildFeeds } from './engine-feeds';
import type { Feed } from './ort-session';
import { ResidentKvStore } from './resident-kv-store';
import type { AttentionKind } from '../graph/graph-attention';
import { buildModelGraph } from '../graph/model-graph';
import type { OnnxGraph } from '../graph/onnx-proto-writer';
import { ResidentRowSources, residentIndices } from './resident-kv-indices';
import { CAPACITY_STEP, SequenceSlots } from './sequence-slots';
import { MapWeightSource, tinyConfig } from '../reference/test-models';

function ringCache(slidingWindow: number | null): SequenceSlots {
  return new SequenceSlots({ slidingWindow, maxSequences: 4, maxModelLen: 64 });
}

const triples = (index: BigInt64Array) => Array.from({ length: index.length / 3 }, (_, i) => Array.from(index.subarray(i * 3, i * 3 + 3), Number));

describe('residentIndices', () => {
  it('decode in a wrapped ring writes slot p mod (W - 1) of the sequence row (docstring example)', () => {
    const cache = ringCache(4);
    const ids = [cache.create(), cache.create(), cache.create()];
    cache.advance(ids[2], 5);
    const plan: BatchPlan = { rows: [{ sequenceId: ids[2], tokenIds: [9] }], sequenceLength: 1, firstRow: 2, timeOrdered: false, useGqa: false };
    const { rows, slots, writeIndex } = residentIndices(plan, cache, 2, cache.capacity + 1);
    expect(Array.from(rows, Number)).toEqual([2]);
    expect(Array.from(slots, Number)).toEqual([0, 1, 2]);
    expect(triples(writeIndex)).toEqual([
      [2, 0, 2],
      [2, 1, 2],
    ]);
  });

  it('fillers and ring overflow write the scratch slot; a wrapped prefill reads its slots oldest first', () => {
    const cache = ringCache(4); // ring of 3
    const a = cache.create();
    const b = cache.create();
    cache.advance(a, 4); // positions 0..3: slots hold [3, 1, 2]
    const prefill: BatchPlan = { rows: [{ sequenceId: a, tokenIds: [5, 6, 7, 8] }], sequenceLength: 4, firstRow: 0, timeOrdered: true, useGqa: true };
    const scratch = cache.capacity; // the last of capacity + 1 slots
    const { slots, writeIndex } = residentIndices(prefill, cache, 1 + 1, cache.capacity + 1);
    expect(Array.from(slots, Number)).toEqual([1, 2, 0]); // positions 1, 2, 3
    const padded = residentIndices(prefill, cache, 2, cache.capacity + 1, 3 + 4); // room for GQA's shared present
    expect(Array.from(padded.slots, Number)).toEqual([1, 2, 0, scratch, scratch, scratch, scratch]);
    // Positions 4..7 -> slots 1, 2, 0, 1: only the newest 3 survive, the first goes to scratch.
    expect(
      triples(writeIndex)
        .filter((_, i) => i % 2 === 0)
        .map((t) => t[2]),
    ).toEqual([scratch, 2, 0, 1]);
    const decode: BatchPlan = {
      rows: [
        { sequenceId: null, tokenIds: [0] },
        { sequenceId: b, tokenIds: [3] },
      ],
      sequenceLength: 1,
      firstRow: 0,
      timeOrdered: false,
      useGqa: false,
    };
    const batch = residentIndices(decode, cache, 2, cache.capacity + 1);
    expect(Array.from(batch.rows, Number)).toEqual([0, 1]); // the layout's row range, as the host store feeds it
    expect(triples(batch.writeIndex).map((t) => t[2])).toEqual([scratch, scratch, 0, 0]);
  });

  it('row sources follow the layout through a fork, a release with compaction and new rows, until the pass', () => {
    const layout = ringCache(null);
    const sources = new ResidentRowSources();
    const [a, b, c] = [layout.create(), layout.create(), layout.create()];
    expect(sources.take(3, 3)).toBeNull(); // nothing moved: no pass
    const fork = layout.fork(a); // the fork takes row 0, a the new top row 3 (a copy of row 0)
    sources.copy(fork.copy);
    const { move } = layout.release(b); // row 1 freed: the top row (a) moves into it
    expect(move).toEqual({ from: 3, to: 1, validSlots: 0 });
    sources.copy(move!);
    layout.create(); // a fresh row 3: what it holds is never read
    expect([layout.row(fork.id), layout.row(a), layout.row(c)]).toEqual([0, 1, 2]);
    expect(sources.take(layout.liveCount, 3)).toEqual([0, 0, 2, 0]);
    expect(sources.take(4, 4)).toBeNull(); // the pass made the tensors the layout's rows
  });

  it('drops released top rows at the next pass and maps rows past the old tensor to row 0', () => {
    const layout = ringCache(null);
    const ids = [layout.create(), layout.create(), layout.create()];
    const sources = new ResidentRowSources();
    expect(layout.release(ids[2]).move).toBeNull();
    expect(sources.take(layout.liveCount, 3)).toEqual([0, 1]);
    sources.copy({ from: 3, to: 1, validSlots: 0 }); // a copy from a row the tensors never had
    expect(sources.take(3, 2)).toEqual([0, 0, 0]);
  });
});

describe('the resident cache I/O of the graph builder', () => {
  const opTypes = (graph: OnnxGraph): string[] =>
    graph.nodes.flatMap((node) => [node.opType, ...Object.values(node.attributes ?? {}).flatMap((a) => ('g' in a ? opTypes(a.g) : []))]);

  it.each(['hybrid', 'unfused', 'fused'] as const)(
    '%s: resident tensors in place of past inputs and new-key outputs, and no CPU-only FusedMatMul',
    async (attention) => {
      const config = tinyConfig({ layerCount: 3, slidingWindow: 8, headDim: 16 });
      const source = new MapWeightSource(config, randomModelWeights(config, 3));
      const plain = await buildModelGraph(source, { format: 'fp32', attention }, null);
      if (attention !== 'fused') expect(opTypes(plain.model.graph)).toContain('FusedMatMul'); // what the host graph uses
      const { model } = await buildModelGraph(source, { format: 'fp32', attention, cacheIo: 'resident' }, null);
      const ops = opTypes(model.graph);
      expect(ops).not.toContain('FusedMatMul');
      expect(ops.filter((op) => op === 'ScatterND')).toHaveLength(2 * config.layerCount);
      const inputs = model.graph.inputs.map((i) => i.name);
      expect(inputs.filter((name) => name.startsWith('past_'))).toEqual([]);
      expect(inputs.filter((name) => name.startsWith('cache_'))).toEqual([
        'cache_rows',
        'cache_slots',
        'cache_write_index',
        ...[0, 1, 2].flatMap((l) => [`cache_key.${l}`, `cache_value.${l}`]),
      ]);
      expect(model.graph.outputs.map((o) => o.name)).toEqual(['logits', ...[0, 1, 2].flatMap((l) => [`present_key.${l}`, `present_value.${l}`])]);
    },
  );
});

describe('engine with a resident KV cache (CPU provider, host tensors)', () => {
  const configOf = (headDim: number) =>
    tinyConfig({ vocabSize: 96, hiddenSize: 64, intermediateSize: 96, layerCount: 2, queryHeadCount: 4, keyValueHeadCount: 2, headDim, slidingWindow: 8 });
  const config = configOf(16);
  const load = (residentKvCache: boolean, variant: { attention?: AttentionKind; gqaDecode?: boolean; headDim?: number } = {}) => {
    const modelConfig = configOf(variant.headDim ?? 16);
    const source = new MapWeightSource(modelConfig, randomModelWeights(modelConfig, 21));
    const options = {
      modelDir: 'resident',
      dtype: 'fp32' as const,
      executionProvider: 'cpu' as const,
      intraOpThreads: 1,
      maxSequences: 4,
      chunkSize: 5,
      onnxCacheDir: null,
    };
    return Engine.fromWeights(source, { ...options, residentKvCache, attention: variant.attention, gqaDecode: variant.gqaDecode });
  };

  it.each([
    ['hybrid: GQA prefill, in-place decode (CPU default)', { attention: 'hybrid' as const }],
    ['hybrid with GQA decode', { attention: 'hybrid' as const, gqaDecode: true }],
    ['fused: pure GQA (the GPU default; past padded for its shared buffer)', { attention: 'fused' as const }],
    ['unfused (headDim 8)', { headDim: 8 }],
  ])('gives the host-cache logits through wrapped prefill, ragged batched decode, fork and release: %s', async (_, variant) => {
    const [host, resident] = await Promise.all([load(false, variant), load(true, variant)]);
    try {
      let worst = 0;
      const compare = (a: Float32Array[], b: Float32Array[]) => a.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i][j])))));
      const engines = [host, resident];
      const ids = engines.map((e) => [e.createSequence(), e.createSequence()]);
      const prompts = [
        [5, 9, 14, 3, 77, 41, 8, 2, 60, 11, 19, 23],
        [4, 4, 8],
      ];
      for (let p = 0; p < 2; p++)
        compare(await host.step([{ sequenceId: ids[0][p], tokenIds: prompts[p] }]), await resident.step([{ sequenceId: ids[1][p], tokenIds: prompts[p] }]));
      for (let step = 0; step < 12; step++) {
        if (step === 3) ids.forEach((list, e) => list.push(engines[e].forkSequence(list[0])));
        if (step === 6) ids.forEach((list, e) => engines[e].releaseSequence(list.splice(1, 1)[0]));
        if (step === 7) ids.forEach((list, e) => list.push(engines[e].createSequence()));
        if (step === 9) ids.forEach((list, e) => engines[e].releaseSequence(list.splice(1, 1)[0])); // the fork, top row: shrink
        const items = (e: number) => ids[e].map((sequenceId, k) => ({ sequenceId, tokenIds: [(step * 7 + k * 5 + 1) % config.vocabSize] }));
        compare(await host.step(items(0)), await resident.step(items(1)));
      }
      expect(worst).toBeLessThan(1e-5);
      expect(resident.kvStats().bytesPerSlot).toBe(host.kvStats().bytesPerSlot);
    } finally {
      await host.dispose();
      await resident.dispose();
    }
  });

  it('a fork of a prefix (the prefix cache cutting a longer row) continues as that prefix prefilled afresh, in both stores (no window)', async () => {
    const modelConfig = tinyConfig({ vocabSize: 96, hiddenSize: 64, intermediateSize: 96, maxPositions: 128 });
    const source = new MapWeightSource(modelConfig, randomModelWeights(modelConfig, 6));
    const options = { modelDir: 'resident', dtype: 'fp32' as const, executionProvider: 'cpu' as const, intraOpThreads: 1, maxSequences: 3, chunkSize: 8 };
    const history = Array.from({ length: 30 }, (_, i) => (i * 17 + 3) % 96);
    const next = [5, 61, 33];
    for (const residentKvCache of [false, true]) {
      const engine = await Engine.fromWeights(source, { ...options, onnxCacheDir: null, residentKvCache });
      try {
        const long = engine.createSequence();
        await engine.step([{ sequenceId: long, tokenIds: history }]);
        const cut = engine.forkSequence(long, 16); // slots 16..29 still hold the longer row's keys
        const fresh = engine.createSequence();
        await engine.step([{ sequenceId: fresh, tokenIds: history.slice(0, 16) }]);
        const [fromCut, fromFresh] = [await engine.scoreTokens(cut, next), await engine.scoreTokens(fresh, next)];
        const worst = Math.max(...fromCut.flatMap((row, i) => Array.from(row, (v, j) => Math.abs(v - fromFresh[i][j]))));
        expect(worst).toBeLessThan(1e-5);
        expect(engine.sequenceLength(cut)).toBe(16 + next.length);
      } finally {
        await engine.dispose();
      }
    }
  });

  it('follows the layout through growth past 64 and 128 slots and the shrink after a long sequence leaves (no window)', async () => {
    const modelConfig = tinyConfig({ vocabSize: 96, hiddenSize: 64, intermediateSize: 96, maxPositions: 300 });
    const source = new MapWeightSource(modelConfig, randomModelWeights(modelConfig, 5));
    const options = { modelDir: 'resident', dtype: 'fp32' as const, executionProvider: 'cpu' as const, intraOpThreads: 1, maxSequences: 3, chunkSize: 64 };
    const [host, resident] = await Promise.all(
      [false, true].map((residentKvCache) => Engine.fromWeights(source, { ...options, onnxCacheDir: null, residentKvCache })),
    );
    try {
      let worst = 0;
      const same = async (items: (ids: number[]) => { sequenceId: number; tokenIds: number[] }[], ids: number[][]) => {
        const [a, b] = await Promise.all([host.step(items(ids[0])), resident.step(items(ids[1]))]);
        a.forEach((row, i) => row.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i][j])))));
      };
      const ids = [host, resident].map((engine) => [engine.createSequence(), engine.createSequence()]);
      const capacities: number[] = [];
      await same(([, short]) => [{ sequenceId: short, tokenIds: [7, 8, 9, 10, 11] }], ids);
      for (const length of [60, 70, 140]) {
        await same(([long]) => [{ sequenceId: long, tokenIds: Array.from({ length }, (_, i) => (i * 13 + length) % 96) }], ids);
        capacities.push(host.cacheCapacity);
        await same((list) => list.map((sequenceId, k) => ({ sequenceId, tokenIds: [(length + k) % 96] })), ids);
      }
      expect(resident.cacheCapacity).toBe(host.cacheCapacity);
      ids.forEach((list, e) => [host, resident][e].releaseSequence(list.shift()!)); // the long one leaves
      capacities.push(host.cacheCapacity);
      for (let step = 0; step < 3; step++) await same((list) => list.map((sequenceId) => ({ sequenceId, tokenIds: [step + 20] })), ids);
      expect(capacities).toEqual([64, 192, 300, 64]); // in 64-slot steps (the resident store re-lays out in place)
      expect(worst).toBeLessThan(1e-5);
    } finally {
      await host.dispose();
      await resident.dispose();
    }
  });

  it('loads a model whose weights go to an external data file (the 7B path) through the ONNX cache, and reloads it from there', async () => {
    const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'resident-test-'));
    const source = new MapWeightSource(config, randomModelWeights(config, 21));
    const options = {
      modelDir: 'resident',
      dtype: 'fp32' as const,
      executionProvider: 'cpu' as const,
      intraOpThreads: 1,
      maxSequences: 2,
      onnxCacheDir: workDir,
    };
    const engines = await Promise.all([
      Engine.fromWeights(source, { ...options, onnxCacheDir: null, residentKvCache: true }),
      Engine.fromWeights(source, { ...options, residentKvCache: true, externalDataThresholdBytes: 1 }),
    ]);
    try {
      // The resident graph is cached like the plain one, in a folder of its own variant.
      const [folder, ...others] = fs.readdirSync(workDir);
      expect(others).toEqual([]);
      expect(folder).toMatch(/^resident-resident-kv-fp32-/);
      const modelPath = path.join(workDir, folder, 'model.onnx');
      expect(fs.readdirSync(path.join(workDir, folder)).sort()).toEqual(['model.onnx', 'model.onnx.data']);
      const built = fs.statSync(modelPath);
      // A second load reads the cached files (not rewritten); a plain-graph load beside it gets its own folder.
      engines.push(await Engine.fromWeights(source, { ...options, residentKvCache: true, externalDataThresholdBytes: 1 }));
      engines.push(await Engine.fromWeights(source, { ...options, residentKvCache: false, externalDataThresholdBytes: 1 }));
      expect(fs.statSync(modelPath).mtimeMs).toBe(built.mtimeMs);
      expect(fs.statSync(modelPath).ino).toBe(built.ino);
      expect(fs.readdirSync(workDir).filter((entry) => entry.startsWith('resident-resident-kv-'))).toEqual([folder]);
      expect(fs.readdirSync(workDir)).toHaveLength(2);
      const logits = [];
      for (const engine of engines) logits.push(Array.from((await engine.step([{ sequenceId: engine.createSequence(), tokenIds: [3, 1, 4, 1, 5] }]))[0]));
      expect(logits[1]).toEqual(logits[0]);
      expect(logits[2]).toEqual(logits[0]);
    } finally {
      for (const engine of engines) await engine.dispose();
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  });

  it('keeps its tensors in the layout shape and moves the bytes of its forks and compaction before the next run', async () => {
    const modelConfig = tinyConfig({ vocabSize: 96, hiddenSize: 64, intermediateSize: 96, maxPositions: 300 });
    const source = new MapWeightSource(modelConfig, randomModelWeights(modelConfig, 8));
    const spec = { format: 'fp32', computeType: 'float32', kvType: 'float32', attention: 'hybrid', int4AccuracyLevel: 0, int4BlockSize: 64 } as const;
    const store = await ResidentKvStore.load(source, {
      spec,
      session: { executionProvider: 'cpu', intraOpThreads: 1, cudaGraphs: false },
      files: { cacheDir: null, checkpointDir: 'resident' },
    });
    const layout = new SequenceSlots({ slidingWindow: null, maxSequences: 4, maxModelLen: 300, growth: 'step' });
    const plan = (sequenceId: number, tokenIds: number[]): BatchPlan => ({
      rows: [{ sequenceId, tokenIds }],
      sequenceLength: tokenIds.length,
      firstRow: layout.row(sequenceId),
      timeOrdered: false,
      useGqa: true,
    });
    const step = async (sequenceId: number, tokenIds: number[]) => {
      const p = plan(sequenceId, tokenIds);
      layout.ensureFits(layout.length(sequenceId) + tokenIds.length);
      await store.run(buildFeeds(modelConfig, 'hybrid', layout, p, await store.pastFeeds(layout, p)));
      layout.advance(sequenceId, tokenIds.length);
    };
    // Row r of the first layer's keys, read through the feeds the next run would get.
    const keyRows = async (sequenceId: number) => {
      const { data, dims } = (await store.pastFeeds(layout, plan(sequenceId, [1])))['cache_key.0'] as Feed & { data: Float32Array };
      const rowSize = dims[1] * dims[2] * dims[3];
      return { dims, row: (r: number) => Array.from(data.subarray(r * rowSize, (r + 1) * rowSize)) };
    };
    try {
      const [a, b, c] = [layout.create(), layout.create(), layout.create()];
      for (const [k, id] of [a, b, c].entries()) await step(id, [3 + k, 7, 11 + k]);
      const before = await keyRows(a);
      expect(before.dims).toEqual([3, modelConfig.keyValueHeadCount, CAPACITY_STEP + 1, modelConfig.headDim]);
      const fork = layout.fork(a); // the fork keeps row 0, a moves to the new row 3
      store.fork(a, fork.id, fork.copy);
      const { move } = layout.release(b); // row 1 freed: the top row (a) fills it
      store.release(b, move);
      const after = await keyRows(a);
      expect(after.dims[0]).toBe(3);
      expect([layout.row(fork.id), layout.row(a), layout.row(c)]).toEqual([0, 1, 2]);
      expect([after.row(0), after.row(1), after.row(2)]).toEqual([before.row(0), before.row(0), before.row(2)]);
      expect(after.row(1)).not.toEqual(before.row(1)); // b's keys are gone
      await step(
        c,
        Array.from({ length: 70 }, (_, i) => i % 96),
      ); // past 64 slots: the tensors grow with the layout
      const grown = await keyRows(c);
      expect(grown.dims[2]).toBe(2 * CAPACITY_STEP + 1);
      layout.release(c);
      const shrunk = await keyRows(a);
      expect([shrunk.dims[0], shrunk.dims[2]]).toEqual([2, CAPACITY_STEP + 1]);
    } finally {
      await store.dispose();
    }
  });

  it('moves no cache bytes per decode step: transfer = token inputs, small indices and the logits rows', async () => {
    const engine = await load(true);
    try {
      const id = engine.createSequence();
      await engine.step([{ sequenceId: id, tokenIds: [1, 2, 3] }]);
      await engine.step([{ sequenceId: id, tokenIds: [4] }]);
      const early = engine.kvStats().lastStepTransferBytes;
      await engine.step([{ sequenceId: id, tokenIds: Array.from({ length: 20 }, (_, i) => i + 5) }]);
      await engine.step([{ sequenceId: id, tokenIds: [6] }]);
      const late = engine.kvStats().lastStepTransferBytes;
      const logitsBytes = config.vocabSize * 4;
      expect(early).toBeGreaterThan(logitsBytes);
      // Bounded by logits + mask/index inputs over the (window-bounded) ring, never a layer of K/V.
      const oneLayerOfCache = 2 * config.keyValueHeadCount * 7 * config.headDim * 4;
      expect(late - logitsBytes).toBeLessThan(oneLayerOfCache);
    } finally {
      await engine.dispose();
    }
  });
});
