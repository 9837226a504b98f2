// Bit-level conversions between float32 and the 16-bit float formats stored in checkpoints (IEEE fp16, bfloat16).
// Rounding is round-to-nearest-even, the rule PyTorch and numpy use when casting down.

const scratch = new DataView(new ArrayBuffer(4));

function float32Bits(value: number): number {
  scratch.setFloat32(0, value, true);
  return scratch.getUint32(0, true);
}

/** fp16 bits -> float32, built once: 65536 entries is cheaper than decoding each value. */
let halfTable: Float32Array | null = null;

function halfToFloatSlow(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24; // subnormal (or zero)
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function getHalfTable(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfToFloatSlow(bits);
  }
  return halfTable;
}

export function float16BitsToFloat32(bits: number): number {
  return getHalfTable()[bits & 0xffff];
}

export function bfloat16BitsToFloat32(bits: number): number {
  scratch.setUint32(0, (bits & 0xffff) << 16, true);
  return scratch.getFloat32(0, true);
}

export function float32ToFloat16Bits(value: number): number {
  return float32BitsToFloat16Bits(float32Bits(value));
}

export function float32ToBfloat16Bits(value: number): number {
  return float32BitsToBfloat16Bits(float32Bits(value));
}

function float32BitsToFloat16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  let mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // inf or quiet NaN
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even.
    if (halfExponent < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - halfExponent;
    const halfMantissa = mantissa >>> shift;
    const remainder = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    const roundUp = remainder > halfway || (remainder === halfway && (halfMantissa & 1) === 1);
    return sign | (halfMantissa + (roundUp ? 1 : 0));
  }
  const remainder = mantissa & 0x1fff;
  let half = sign | (halfExponent << 10) | (mantissa >>> 13);
  // A carry out of the mantissa correctly bumps the exponent (up to inf).
  if (remainder > 0x1000 || (remainder === 0x1000 && (half & 1) === 1)) half += 1;
  return half;
}

function float32BitsToBfloat16Bits(bits: number): number {
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x7fffff) !== 0) return ((bits >>> 16) | 0x40) & 0xffff; // quiet NaN
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Little-endian fp16 or bf16 bytes -> Float32Array (the host is little-endian, as on x86-64 and arm64). */
export function sixteenBitToFloat32(bytes: Uint8Array, dtype: 'F16' | 'BF16'): Float32Array {
  const count = bytes.byteLength >>> 1;
  const aligned = bytes.byteOffset % 2 === 0 ? bytes : bytes.slice(); // typed-array views need alignment
  const source = new Uint16Array(aligned.buffer, aligned.byteOffset, count);
  const out = new Float32Array(count);
  if (dtype === 'F16') {
    const table = getHalfTable();
    for (let i = 0; i < count; i++) out[i] = table[source[i]];
  } else {
    const outBits = new Uint32Array(out.buffer);
    for (let i = 0; i < count; i++) outBits[i] = source[i] << 16;
  }
  return out;
}

/** Float32Array -> little-endian fp16 or bf16 bits. */
export function float32ToSixteenBit(values: Float32Array, dtype: 'F16' | 'BF16'): Uint16Array {
  const out = new Uint16Array(values.length);
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const convert = dtype === 'F16' ? float32BitsToFloat16Bits : float32BitsToBfloat16Bits;
  for (let i = 0; i < values.length; i++) out[i] = convert(bits[i]);
  return out;
}
