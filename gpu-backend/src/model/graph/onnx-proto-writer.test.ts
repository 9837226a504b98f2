// Protobuf bytes of the ONNX writer against hand-computed encodings (protobuf wire format spec).

import { describe, expect, it } from 'vitest';
import { concatChunks, encodeOnnxModel, type OnnxModel } from './onnx-proto-writer';

function model(attributeValue: number): OnnxModel {
  return {
    irVersion: 10,
    producerName: 'p',
    producerVersion: '1',
    opsets: [{ domain: '', version: 21 }],
    graph: {
      name: 'g',
      nodes: [{ opType: 'Op', inputs: ['x'], outputs: ['y'], attributes: { a: { i: attributeValue } } }],
      initializers: [],
      inputs: [{ name: 'x', dataType: 'float32', shape: ['batch', 3] }],
      outputs: [],
    },
  };
}

describe('encodeOnnxModel', () => {
  it('writes ir_version, names, a symbolic and a fixed dim, and the opset as length-delimited fields', () => {
    const bytes = Array.from(concatChunks(encodeOnnxModel(model(150))));
    expect(bytes.slice(0, 2)).toEqual([0x08, 10]); // field 1 varint: ir_version 10
    expect(bytes.slice(2, 5)).toEqual([0x12, 1, 0x70]); // field 2 string "p"
    // NodeProto attribute a: name (0x0a 1 'a'), i = 150 as varint 0x96 0x01 (field 3), type INT (field 20 = 0xa0 0x01, 2)
    const attribute = [0x0a, 1, 0x61, 0x18, 0x96, 0x01, 0xa0, 0x01, 2];
    expect(indexOf(bytes, attribute)).toBeGreaterThan(0);
    // TensorShapeProto dims: dim_param "batch" (field 2 of Dimension), dim_value 3 (field 1)
    expect(indexOf(bytes, [0x0a, 7, 0x12, 5, ...Buffer.from('batch')])).toBeGreaterThan(0);
    expect(indexOf(bytes, [0x0a, 2, 0x08, 3])).toBeGreaterThan(0);
    // opset_import (field 8): domain "" and version 21
    expect(bytes.slice(-6)).toEqual([0x42, 4, 0x0a, 0, 0x10, 21]);
  });

  it("encodes a negative int64 attribute as the 10-byte two's complement varint", () => {
    const bytes = Array.from(concatChunks(encodeOnnxModel(model(-1))));
    expect(indexOf(bytes, [0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).toBeGreaterThan(0);
  });
});

function indexOf(haystack: number[], needle: number[]): number {
  outer: for (let i = 0; i <= haystack.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
