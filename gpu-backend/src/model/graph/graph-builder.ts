// Accumulates ONNX nodes, inputs/outputs and initializers; big initializers stream to an external
// data file as they are added, so a 7B checkpoint never sits in memory twice.

import fs from 'node:fs';
import type { OnnxAttribute, OnnxDataType, OnnxGraph, OnnxModel, OnnxNode, OnnxTensor, OnnxValueInfo } from './onnx-proto-writer';

/** Initializers at least this big go to the external data file when there is one. */
const EXTERNAL_MIN_BYTES = 1024;
/** Offsets are page aligned so onnxruntime can map the data file. */
const EXTERNAL_ALIGNMENT = 4096;
/** fs.writeSync cannot write more than 2 GiB at once. */
const MAX_WRITE_BYTES = 1 << 30;

/** Appends tensors to `<model>.onnx.data`. */
export class ExternalDataWriter {
  private offset = 0;
  private readonly fd: number;

  constructor(
    readonly filePath: string,
    readonly location: string,
  ) {
    this.fd = fs.openSync(filePath, 'w');
  }

  write(data: Uint8Array): { offset: number; length: number } {
    const padding = (EXTERNAL_ALIGNMENT - (this.offset % EXTERNAL_ALIGNMENT)) % EXTERNAL_ALIGNMENT;
    if (padding > 0) {
      fs.writeSync(this.fd, new Uint8Array(padding));
      this.offset += padding;
    }
    const start = this.offset;
    for (let done = 0; done < data.length; done += MAX_WRITE_BYTES) {
      fs.writeSync(this.fd, data.subarray(done, Math.min(data.length, done + MAX_WRITE_BYTES)));
    }
    this.offset += data.length;
    return { offset: start, length: data.length };
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

export function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  private nameCounter = 0;
  private readonly constants = new Map<string, string>();

  /** A subgraph builder (If branches) puts its initializers and constants in the root graph (outer scope). */
  constructor(
    private readonly external: ExternalDataWriter | null,
    private readonly root: GraphBuilder | null = null,
  ) {}

  /** A builder for an If branch: own nodes and outputs, initializers shared with this graph. */
  branch(): GraphBuilder {
    return new GraphBuilder(null, this.root ?? this);
  }

  /** This builder's nodes and outputs as a subgraph (an If branch has no inputs). */
  subgraph(name: string): OnnxGraph {
    return { name, nodes: this.nodes, initializers: [], inputs: [], outputs: this.outputs };
  }

  input(name: string, dataType: OnnxDataType, shape: (number | string)[]): string {
    this.inputs.push({ name, dataType, shape });
    return name;
  }

  output(name: string, dataType: OnnxDataType, shape: (number | string)[] | null): void {
    this.outputs.push({ name, dataType, shape });
  }

  /** Adds a node and returns its output names (fresh unique names unless given). */
  node(
    opType: string,
    inputs: string[],
    attributes: Record<string, OnnxAttribute> = {},
    options: { domain?: string; outputs?: number | string[]; name?: string } = {},
  ): string[] {
    const id = `${options.name ?? opType}_${(this.root ?? this).nameCounter++}`;
    const outputSpec = options.outputs ?? 1;
    const outputs = typeof outputSpec === 'number' ? Array.from({ length: outputSpec }, (_, i) => `${id}/out${i}`) : outputSpec;
    this.nodes.push({ opType, domain: options.domain, name: id, inputs, outputs, attributes });
    return outputs;
  }

  /** Single-output node. */
  op(opType: string, inputs: string[], attributes: Record<string, OnnxAttribute> = {}, domain?: string): string {
    return this.node(opType, inputs, attributes, { domain })[0];
  }

  initializer(name: string, dataType: OnnxDataType, dims: number[], data: Uint8Array): string {
    if (this.root) return this.root.initializer(name, dataType, dims, data);
    if (this.external && data.length >= EXTERNAL_MIN_BYTES) {
      const { offset, length } = this.external.write(data);
      this.initializers.push({ name, dataType, dims, external: { location: this.external.location, offset, length } });
    } else {
      // Copy: the caller's buffer may be reused for the next tensor.
      this.initializers.push({ name, dataType, dims, data: data.slice() });
    }
    return name;
  }

  /** A small int64 constant (shapes, axes, indices), deduplicated and always inline. */
  int64(values: number[], dims: number[] = [values.length]): string {
    if (this.root) return this.root.int64(values, dims);
    const key = `${dims.join('x')}:${values.join(',')}`;
    const existing = this.constants.get(key);
    if (existing) return existing;
    const name = `const_i64_${this.constants.size}`;
    this.initializers.push({ name, dataType: 'int64', dims, data: bytesOf(BigInt64Array.from(values.map(BigInt))) });
    this.constants.set(key, name);
    return name;
  }

  build(producerVersion: string): OnnxModel {
    return {
      irVersion: 10,
      producerName: 'mistral-edge-serve graph-builder',
      producerVersion,
      opsets: [
        { domain: '', version: 21 },
        { domain: 'com.microsoft', version: 1 },
      ],
      graph: { name: 'mistral', nodes: this.nodes, initializers: this.initializers, inputs: this.inputs, outputs: this.outputs },
    };
  }
}
