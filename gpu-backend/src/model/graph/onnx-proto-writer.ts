// Hand-written protobuf encoder for the subset of ONNX (onnx.proto3, IR 10) the graph builder emits:
// ModelProto, GraphProto, NodeProto, AttributeProto, TensorProto (raw or external data), ValueInfoProto.

export type OnnxDataType = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8' | 'bool';

/** TensorProto.DataType enum values. */
const DATA_TYPE_CODE: Record<OnnxDataType, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float16: 10 };

export interface OnnxExternalData {
  location: string;
  offset: number;
  length: number;
}

export interface OnnxTensor {
  name: string;
  dataType: OnnxDataType;
  dims: number[];
  /** Little-endian raw bytes; absent when `external` is set. */
  data?: Uint8Array;
  external?: OnnxExternalData;
}

export type OnnxAttribute = { i: number } | { f: number } | { s: string } | { ints: number[] } | { floats: number[] } | { t: OnnxTensor } | { g: OnnxGraph };

export interface OnnxNode {
  opType: string;
  domain?: string;
  name?: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, OnnxAttribute>;
}

/** A graph input or output; string dims are symbolic (dim_param); null shape = rank unknown. */
export interface OnnxValueInfo {
  name: string;
  dataType: OnnxDataType;
  shape: (number | string)[] | null;
}

export interface OnnxGraph {
  name: string;
  nodes: OnnxNode[];
  initializers: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

export interface OnnxModel {
  irVersion: number;
  producerName: string;
  producerVersion: string;
  opsets: { domain: string; version: number }[];
  graph: OnnxGraph;
}

const WIRE_VARINT = 0;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;
const textEncoder = new TextEncoder();

/** Append-only protobuf writer; large byte fields are kept as separate chunks, not copied twice. */
class ProtoWriter {
  private readonly chunks: Uint8Array[] = [];
  private scratch = new Uint8Array(1024);
  private position = 0;

  private ensure(extra: number): void {
    if (this.position + extra <= this.scratch.length) return;
    this.flush();
    if (extra > this.scratch.length) this.scratch = new Uint8Array(extra * 2);
  }

  private flush(): void {
    if (this.position === 0) return;
    this.chunks.push(this.scratch.slice(0, this.position));
    this.position = 0;
  }

  varint(value: number | bigint): void {
    // int64 fields: negative numbers are encoded as their 64-bit two's complement (10 bytes).
    let v = typeof value === 'bigint' ? BigInt.asUintN(64, value) : value < 0 ? BigInt.asUintN(64, BigInt(value)) : value;
    this.ensure(10);
    if (typeof v === 'number' && v < 2 ** 31) {
      while (v >= 0x80) {
        this.scratch[this.position++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.scratch[this.position++] = v;
    } else {
      let big = BigInt(v);
      while (big >= 0x80n) {
        this.scratch[this.position++] = Number(big & 0x7fn) | 0x80;
        big >>= 7n;
      }
      this.scratch[this.position++] = Number(big);
    }
  }

  tag(field: number, wireType: number): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): void {
    this.tag(field, WIRE_VARINT);
    this.varint(value);
  }

  float(field: number, value: number): void {
    this.tag(field, WIRE_FIXED32);
    this.ensure(4);
    new DataView(this.scratch.buffer).setFloat32(this.position, value, true);
    this.position += 4;
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, WIRE_LENGTH);
    this.varint(data.length);
    if (data.length <= 256) {
      this.ensure(data.length);
      this.scratch.set(data, this.position);
      this.position += data.length;
    } else {
      this.flush();
      this.chunks.push(data);
    }
  }

  string(field: number, value: string): void {
    this.bytes(field, textEncoder.encode(value));
  }

  message(field: number, build: (writer: ProtoWriter) => void): void {
    const inner = new ProtoWriter();
    build(inner);
    this.tag(field, WIRE_LENGTH);
    const parts = inner.parts();
    this.varint(parts.reduce((sum, part) => sum + part.length, 0));
    this.flush();
    this.chunks.push(...parts);
  }

  parts(): Uint8Array[] {
    this.flush();
    return this.chunks;
  }
}

function writeTensor(w: ProtoWriter, tensor: OnnxTensor): void {
  for (const dim of tensor.dims) w.int(1, dim);
  w.int(2, DATA_TYPE_CODE[tensor.dataType]);
  w.string(8, tensor.name);
  if (tensor.external) {
    const { location, offset, length } = tensor.external;
    const entries: [string, string][] = [
      ['location', location],
      ['offset', String(offset)],
      ['length', String(length)],
    ];
    for (const [key, value] of entries) {
      w.message(13, (entry) => {
        entry.string(1, key);
        entry.string(2, value);
      });
    }
    w.int(14, 1); // data_location = EXTERNAL
  } else {
    w.bytes(9, tensor.data ?? new Uint8Array(0));
  }
}

function writeAttribute(w: ProtoWriter, name: string, attribute: OnnxAttribute): void {
  w.string(1, name);
  // AttributeProto.type enum: FLOAT=1 INT=2 STRING=3 TENSOR=4 GRAPH=5 FLOATS=6 INTS=7
  if ('f' in attribute) {
    w.float(2, attribute.f);
    w.int(20, 1);
  } else if ('i' in attribute) {
    w.int(3, attribute.i);
    w.int(20, 2);
  } else if ('s' in attribute) {
    w.string(4, attribute.s);
    w.int(20, 3);
  } else if ('t' in attribute) {
    w.message(5, (tensor) => writeTensor(tensor, attribute.t));
    w.int(20, 4);
  } else if ('g' in attribute) {
    w.message(6, (graph) => writeGraph(graph, attribute.g));
    w.int(20, 5);
  } else if ('floats' in attribute) {
    for (const value of attribute.floats) w.float(7, value);
    w.int(20, 6);
  } else {
    for (const value of attribute.ints) w.int(8, value);
    w.int(20, 7);
  }
}

function writeNode(w: ProtoWriter, node: OnnxNode): void {
  for (const input of node.inputs) w.string(1, input);
  for (const output of node.outputs) w.string(2, output);
  if (node.name) w.string(3, node.name);
  w.string(4, node.opType);
  for (const [name, attribute] of Object.entries(node.attributes ?? {})) {
    w.message(5, (a) => writeAttribute(a, name, attribute));
  }
  if (node.domain) w.string(7, node.domain);
}

function writeValueInfo(w: ProtoWriter, info: OnnxValueInfo): void {
  w.string(1, info.name);
  w.message(2, (type) =>
    type.message(1, (tensorType) => {
      tensorType.int(1, DATA_TYPE_CODE[info.dataType]);
      const dims = info.shape;
      if (dims === null) return;
      tensorType.message(2, (shape) => {
        for (const dim of dims) {
          shape.message(1, (d) => (typeof dim === 'number' ? d.int(1, dim) : d.string(2, dim)));
        }
      });
    }),
  );
}

function writeGraph(w: ProtoWriter, graph: OnnxGraph): void {
  for (const node of graph.nodes) w.message(1, (n) => writeNode(n, node));
  w.string(2, graph.name);
  for (const tensor of graph.initializers) w.message(5, (t) => writeTensor(t, tensor));
  for (const input of graph.inputs) w.message(11, (v) => writeValueInfo(v, input));
  for (const output of graph.outputs) w.message(12, (v) => writeValueInfo(v, output));
}

/** Encodes a model as a list of byte chunks (weights are not copied into one giant buffer). */
export function encodeOnnxModel(model: OnnxModel): Uint8Array[] {
  const w = new ProtoWriter();
  w.int(1, model.irVersion);
  w.string(2, model.producerName);
  w.string(3, model.producerVersion);
  w.message(7, (g) => writeGraph(g, model.graph));
  for (const opset of model.opsets) {
    w.message(8, (o) => {
      o.string(1, opset.domain);
      o.int(2, opset.version);
    });
  }
  return w.parts();
}

/** The whole model in one buffer (for in-memory sessions of small models). */
export function concatChunks(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}
