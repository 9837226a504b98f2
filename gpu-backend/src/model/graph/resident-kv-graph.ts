// The device-resident KV cache's graph parts (cacheIo 'resident', the WebGPU path): the model graph
// gathers each run's past from resident cache tensors and returns them updated, so keys/values never
// cross to the host; and a small graph that re-lays those tensors out (rows, slots) on the device.

import type { ModelConfig } from '../checkpoint/config';
import type { GraphBuilder } from './graph-builder';
import type { OnnxDataType, OnnxModel, OnnxNode, OnnxValueInfo } from './onnx-proto-writer';

const KINDS = ['key', 'value'] as const;

export const residentInputName = (kind: 'key' | 'value', layer: number): string => `cache_${kind}.${layer}`;
export const residentOutputName = (kind: 'key' | 'value', layer: number): string => `present_${kind}.${layer}`;

/**
 * The resident cache inputs, and per layer the past the attention reads: `past_key.L` / `past_value.L`
 * = `cache_key.L` / `cache_value.L` [rows, kvHead, slots, headDim] gathered by `cache_rows` [batch]
 * (axis 0) and `cache_slots` [pastSlots] (axis 2). `cache_write_index` [batch, sequence, kvHead, 3]
 * (row, kvHead, slot per new key) is read by emitResidentPresent.
 */
export function emitResidentPast(g: GraphBuilder, config: ModelConfig, dataType: OnnxDataType): void {
  const { keyValueHeadCount, headDim, layerCount } = config;
  const rows = g.input('cache_rows', 'int64', ['batch']);
  const slots = g.input('cache_slots', 'int64', ['past_slots']);
  g.input('cache_write_index', 'int64', ['batch', 'sequence', keyValueHeadCount, 3]);
  for (let layer = 0; layer < layerCount; layer++) {
    for (const kind of KINDS) {
      const cache = g.input(residentInputName(kind, layer), dataType, ['cache_rows_total', keyValueHeadCount, 'cache_slots_total', headDim]);
      const rowsOfBatch = g.op('Gather', [cache, rows], { axis: { i: 0 } }); // [batch, kvHead, slots, headDim]
      g.node('Gather', [rowsOfBatch, slots], { axis: { i: 2 } }, { outputs: [`past_${kind}.${layer}`] }); // [batch, kvHead, pastSlots, headDim]
    }
  }
}

/**
 * Per layer, the graph output `present_key.L` / `present_value.L` = ScatterND(cache, cache_write_index,
 * the new rows `new_key.L` / `new_value.L` [batch, sequence, kvHead * headDim] as [.., kvHead, headDim]):
 * the resident tensor with this run's keys/values written where the layout put them.
 */
export function emitResidentPresent(g: GraphBuilder, config: ModelConfig, dataType: OnnxDataType): void {
  const { keyValueHeadCount, headDim, layerCount } = config;
  const perHead = g.int64([0, 0, keyValueHeadCount, headDim]);
  for (let layer = 0; layer < layerCount; layer++) {
    for (const kind of KINDS) {
      const newRows = g.op('Reshape', [`new_${kind}.${layer}`, perHead]); // [batch, sequence, kvHead, headDim]
      const present = residentOutputName(kind, layer);
      g.node('ScatterND', [residentInputName(kind, layer), 'cache_write_index', newRows], {}, { outputs: [present] });
      g.output(present, dataType, ['cache_rows_total', keyValueHeadCount, 'cache_slots_total', headDim]);
    }
  }
}

/**
 * A graph over all layers' resident tensors: out = Gather(Gather(cache, `row_sources` [rows], axis 0),
 * `slot_sources` [slots], axis 2). Row r of the result is row row_sources[r] of the old tensor (the
 * layout's forks and row compaction, fresh rows, released top rows dropped); slot s is old slot
 * slot_sources[s] (a capacity change).
 */
export function residentRelayoutGraph(config: ModelConfig, dataType: OnnxDataType): OnnxModel {
  const { keyValueHeadCount, headDim, layerCount } = config;
  const inputs: OnnxValueInfo[] = [
    { name: 'row_sources', dataType: 'int64', shape: ['rows'] },
    { name: 'slot_sources', dataType: 'int64', shape: ['slots'] },
  ];
  const outputs: OnnxValueInfo[] = [];
  const nodes: OnnxNode[] = [];
  for (let layer = 0; layer < layerCount; layer++) {
    for (const kind of KINDS) {
      const cache = residentInputName(kind, layer);
      inputs.push({ name: cache, dataType, shape: ['old_rows', keyValueHeadCount, 'old_slots', headDim] });
      const rows = `${cache}.rows`;
      nodes.push({ opType: 'Gather', name: `${cache}.gather_rows`, inputs: [cache, 'row_sources'], outputs: [rows], attributes: { axis: { i: 0 } } });
      const present = residentOutputName(kind, layer);
      nodes.push({ opType: 'Gather', name: `${cache}.gather_slots`, inputs: [rows, 'slot_sources'], outputs: [present], attributes: { axis: { i: 2 } } });
      outputs.push({ name: present, dataType, shape: ['rows', keyValueHeadCount, 'slots', headDim] });
    }
  }
  return {
    irVersion: 10,
    producerName: 'mistral-edge-serve resident-kv-graph',
    producerVersion: '2',
    opsets: [{ domain: '', version: 21 }],
    graph: { name: 'resident_relayout', nodes, initializers: [], inputs, outputs },
  };
}
