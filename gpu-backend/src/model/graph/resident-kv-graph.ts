// Graph changes for the resident KV cache (WebGPU): the model graph reads its past from resident cache
// tensors and returns them updated, so keys/values never cross to the host; and a small graph that
// grows those tensors or copies rows (forks) on the device.

import type { ModelConfig } from '../checkpoint/config';
import type { OnnxDataType, OnnxGraph, OnnxModel, OnnxNode } from './onnx-proto-writer';

const KINDS = ['key', 'value'] as const;

export const residentInputName = (kind: 'key' | 'value', layer: number): string => `cache_${kind}.${layer}`;
export const residentOutputName = (kind: 'key' | 'value', layer: number): string => `present_${kind}.${layer}`;

function int64Initializer(name: string, values: number[]) {
  const data = new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
  return { name, dataType: 'int64' as const, dims: [values.length], data };
}

/**
 * Rewrites a built model graph (mutating it): per layer the inputs `past_key.L`/`past_value.L` become
 * values gathered from `cache_key.L`/`cache_value.L` [rows, kvHead, slots, headDim] by `cache_rows`
 * [batch] and `cache_slots` [pastSlots]; outputs `new_key.L`/`new_value.L` [batch, sequence, kvHead *
 * headDim] are replaced by `present_key.L`/`present_value.L` = ScatterND(cache, `cache_write_index`
 * [batch, sequence, kvHead, 3], new rows). Every consumer of the past is left as it is.
 */
export function addResidentCache(model: OnnxModel, config: ModelConfig): void {
  const { graph } = model;
  const { keyValueHeadCount, headDim, layerCount } = config;
  const pastInput = graph.inputs.find((input) => input.name === 'past_key.0');
  if (!pastInput) throw new Error('the model graph has no past_key.0 input to make resident');
  const dataType: OnnxDataType = pastInput.dataType;
  const cacheShape = ['cache_rows_total', keyValueHeadCount, 'cache_slots_total', headDim];
  graph.inputs = graph.inputs.filter((input) => !/^past_(key|value)\.\d+$/.test(input.name));
  graph.outputs = graph.outputs.filter((output) => !/^new_(key|value)\.\d+$/.test(output.name));
  graph.inputs.push(
    { name: 'cache_rows', dataType: 'int64', shape: ['batch'] },
    { name: 'cache_slots', dataType: 'int64', shape: ['past_slots'] },
    { name: 'cache_write_index', dataType: 'int64', shape: ['batch', 'sequence', keyValueHeadCount, 3] },
  );
  graph.initializers.push(int64Initializer('resident.new_shape', [0, 0, keyValueHeadCount, headDim]));
  const nodes: OnnxNode[] = [];
  for (let layer = 0; layer < layerCount; layer++) {
    for (const kind of KINDS) {
      const cache = residentInputName(kind, layer);
      graph.inputs.push({ name: cache, dataType, shape: cacheShape });
      const rowsOfBatch = `resident.${kind}.${layer}.rows`; // [batch, kvHead, slots, headDim]
      nodes.push({ opType: 'Gather', name: `${rowsOfBatch}.gather`, inputs: [cache, 'cache_rows'], outputs: [rowsOfBatch], attributes: { axis: { i: 0 } } });
      nodes.push({
        opType: 'Gather',
        name: `resident.${kind}.${layer}.past`,
        inputs: [rowsOfBatch, 'cache_slots'],
        outputs: [`past_${kind}.${layer}`],
        attributes: { axis: { i: 2 } },
      });
      const newRows = `resident.${kind}.${layer}.new`; // [batch, sequence, kvHead, headDim]
      nodes.push({ opType: 'Reshape', name: `${newRows}.reshape`, inputs: [`new_${kind}.${layer}`, 'resident.new_shape'], outputs: [newRows], attributes: {} });
      const present = residentOutputName(kind, layer);
      nodes.push({ opType: 'ScatterND', name: `${present}.scatter`, inputs: [cache, 'cache_write_index', newRows], outputs: [present], attributes: {} });
      graph.outputs.push({ name: present, dataType, shape: cacheShape });
    }
  }
  // The gathers feed nodes built earlier, so they go first (ONNX wants nodes topologically sorted).
  graph.nodes = [...nodes.filter((node) => node.opType === 'Gather'), ...graph.nodes, ...nodes.filter((node) => node.opType !== 'Gather')];
  replaceFusedMatMul(graph);
}

/**
 * com.microsoft.FusedMatMul (transB) has no WebGPU kernel: it would run on the CPU and pull the cache
 * across. Rewritten as Transpose + MatMul, in If branches too.
 */
function replaceFusedMatMul(graph: OnnxGraph): void {
  graph.nodes = graph.nodes.flatMap((node) => {
    for (const attribute of Object.values(node.attributes ?? {})) if ('g' in attribute) replaceFusedMatMul(attribute.g);
    const attributeNames = Object.keys(node.attributes ?? {});
    const onlyTransB =
      attributeNames.every((name) => name === 'transB') && node.attributes?.transB && 'i' in node.attributes.transB && node.attributes.transB.i === 1;
    if (node.opType !== 'FusedMatMul' || !onlyTransB) return [node];
    const transposed = `${node.name ?? node.outputs[0]}.transposed_b`;
    return [
      // The in-place attention's products are 5-D ([batch, kvHeads, G or 1, rows, headDim]).
      { opType: 'Transpose', name: `${transposed}.node`, inputs: [node.inputs[1]], outputs: [transposed], attributes: { perm: { ints: [0, 1, 2, 4, 3] } } },
      { opType: 'MatMul', name: node.name, inputs: [node.inputs[0], transposed], outputs: node.outputs, attributes: {} },
    ];
  });
}

/**
 * A graph over all layers' resident tensors: out = Gather(Pad(cache, `pads` [8]), `row_sources` [rows],
 * axis 0). Zero pads grow rows/slots; row_sources[r] = s makes row r a copy of row s (forks).
 */
export function residentResizeGraph(config: ModelConfig, dataType: OnnxDataType): OnnxModel {
  const { keyValueHeadCount, headDim, layerCount } = config;
  const inputs = [
    { name: 'pads', dataType: 'int64' as const, shape: [8] },
    { name: 'row_sources', dataType: 'int64' as const, shape: ['rows'] },
  ];
  const outputs = [];
  const nodes: OnnxNode[] = [];
  for (let layer = 0; layer < layerCount; layer++) {
    for (const kind of KINDS) {
      const cache = residentInputName(kind, layer);
      inputs.push({ name: cache, dataType, shape: ['old_rows', keyValueHeadCount, 'old_slots', headDim] } as never);
      const padded = `${cache}.padded`;
      nodes.push({ opType: 'Pad', name: `${cache}.pad`, inputs: [cache, 'pads'], outputs: [padded], attributes: {} });
      nodes.push({
        opType: 'Gather',
        name: `${cache}.rows`,
        inputs: [padded, 'row_sources'],
        outputs: [residentOutputName(kind, layer)],
        attributes: { axis: { i: 0 } },
      });
      outputs.push({ name: residentOutputName(kind, layer), dataType, shape: ['rows', keyValueHeadCount, 'slots', headDim] });
    }
  }
  return {
    irVersion: 10,
    producerName: 'mistral-edge-serve resident-kv-graph',
    producerVersion: '1',
    opsets: [{ domain: '', version: 21 }],
    graph: { name: 'resident_resize', nodes, initializers: [], inputs, outputs },
  };
}
