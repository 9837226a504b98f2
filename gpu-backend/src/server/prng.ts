// Per-request pseudo-random numbers: a seeded generator owned by one choice, so the sampled tokens
// depend on the request's seed and nothing else (not on batch company or arrival order).

/** sfc32 (Chris Doty-Humphrey's Small Fast Counter): 128-bit state, 32-bit outputs, passes PractRand. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private counter = 1;

  /** `seed` is any safe integer; `stream` separates the choices of one request (n > 1). */
  constructor(seed: number, stream = 0) {
    // Split the 53-bit seed into two 32-bit words so seeds above 2^32 still differ.
    const low = seed >>> 0;
    const high = Math.floor(Math.abs(seed) / 0x1_0000_0000) >>> 0;
    this.a = low ^ 0x9e3779b9;
    this.b = (high ^ Math.imul(stream + 1, 0x85ebca6b)) >>> 0;
    this.c = (seed < 0 ? 0xdeadbeef : 0x5bd1e995) ^ stream;
    // Warm up: the first outputs of sfc32 from a low-entropy state are correlated with the seed.
    for (let i = 0; i < 15; i++) this.nextUint32();
  }

  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.counter) | 0;
    this.counter = (this.counter + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 53 bits of precision. */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67_108_864 + low) / 9_007_199_254_740_992;
  }
}

/** A seed for requests that did not send one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * Number.MAX_SAFE_INTEGER);
}
