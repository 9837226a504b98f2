import { describe, expect, it } from 'vitest';
import { computeTypeOf, kvCacheElementType } from './engine-types';

describe('compute and cache types', () => {
  it('int4 computes in fp16 only on CUDA, whose attention and int4 kernels are fp16; fp16 everywhere, fp32 nowhere', () => {
    expect(computeTypeOf('int4', 'cuda')).toBe('float16');
    expect(computeTypeOf('int4', 'cpu')).toBe('float32');
    expect(computeTypeOf('int4', 'webgpu')).toBe('float32');
    expect(computeTypeOf('fp16', 'cpu')).toBe('float16');
    expect(computeTypeOf('fp32', 'cuda')).toBe('float32');
  });

  it('the cache follows the compute type unless kvCacheDtype says otherwise', () => {
    expect(kvCacheElementType(computeTypeOf('int4', 'cuda'))).toBe('float16');
    expect(kvCacheElementType('float32', 'fp16')).toBe('float16');
    expect(kvCacheElementType('float16', 'fp32')).toBe('float32');
  });
});
