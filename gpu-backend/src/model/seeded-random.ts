// A small deterministic PRNG (mulberry32) with normal samples (Box-Muller), for reproducible random weights.
// Same seed, same numbers: 32-bit integer ops plus V8's fdlibm-based Math.log/cos/sin, which do not vary by CPU.

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

  /** Uniform in (0, 1): never 0, so log() in Box-Muller stays finite. */
  nextFloat(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  /** Standard normal; Box-Muller yields two per pair of uniforms, the second is kept for the next call. */
  nextNormal(): number {
    if (this.spareNormal !== null) {
      const spare = this.spareNormal;
      this.spareNormal = null;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(this.nextFloat()));
    const angle = 2 * Math.PI * this.nextFloat();
    this.spareNormal = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** Fills `target` with mean + std * N(0, 1). */
  fillNormal(target: Float32Array, std: number, mean = 0): Float32Array {
    for (let i = 0; i < target.length; i++) target[i] = mean + std * this.nextNormal();
    return target;
  }
}
