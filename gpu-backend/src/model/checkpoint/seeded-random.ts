// A small deterministic PRNG (mulberry32) with normal samples (polar method), for reproducible random weights.
// Same seed, same numbers: 32-bit integer ops plus V8's own (fdlibm-based) Math.log, which does not vary by CPU.

/** FNV-1a over a string, mixed with a seed: gives each tensor its own stream, independent of write order. */
export function hashSeed(seed: number, label: string): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < label.length; i++) {
    hash ^= label.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export class SeededRandom {
  private state: number;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in (0, 1). */
  nextFloat(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /**
   * Standard normal by Marsaglia's polar method (Box-Muller without sin/cos): draw a point in the unit disc,
   * get two independent normals from it; the second is kept for the next call.
   */
  nextNormal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    for (;;) {
      const u = 2 * this.nextFloat() - 1;
      const v = 2 * this.nextFloat() - 1;
      const radiusSquared = u * u + v * v;
      if (radiusSquared >= 1 || radiusSquared === 0) continue;
      const factor = Math.sqrt((-2 * Math.log(radiusSquared)) / radiusSquared);
      this.spareNormal = v * factor;
      return u * factor;
    }
  }

  /** Fills `target` with mean + std * N(0, 1). */
  fillNormal(target: Float32Array, std: number, mean = 0): Float32Array {
    for (let i = 0; i < target.length; i++) target[i] = mean + std * this.nextNormal();
    return target;
  }
}
