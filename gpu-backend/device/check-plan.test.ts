// The device check's plans: on cuda + native, rows without CUDA graphs (unless --cuda-graphs on) and the JS
// session's host-KV row beside the native figures; nothing extra elsewhere, and the short rows keep the
// full plan's model and format so they load the graph it built.

import { describe, expect, it } from 'vitest';
import { parseArgs, speedPlans } from './check-plan';

const labels = (argv: string[]) => speedPlans(parseArgs(argv)).map(({ label, cudaGraphs, runtime }) => [label, cudaGraphs, runtime]);

describe('speedPlans', () => {
  it('adds decode rows without CUDA graphs and through the JS session on cuda + native', () => {
    const plans = speedPlans(parseArgs(['--ep', 'cuda', '--runtime', 'native']));
    expect(labels(['--ep', 'cuda', '--runtime', 'native'])).toEqual([
      ['125M fp16', undefined, undefined],
      ['7B-shape 4L fp16', undefined, undefined],
      ['7B-shape 4L int4', undefined, undefined],
      ['7B-shape 4L fp16 -graphs', false, undefined],
      ['7B-shape 4L int4 -graphs', false, undefined],
      ['7B-shape 4L fp16 js', undefined, 'js'],
    ]);
    const [, fp16, , withoutGraphs, , js] = plans;
    expect(withoutGraphs.plan).toMatchObject({ shape: fp16.plan.shape, layerCount: fp16.plan.layerCount, dtype: 'fp16', contexts: [128], batches: [1, 32] });
    expect(js.plan).toMatchObject({ dtype: 'fp16', contexts: [128, 4096], batches: [1] });
    expect(labels(['--ep', 'cuda', '--runtime', 'native', '--cuda-graphs', 'on']).map(([label]) => label)).not.toContain('7B-shape 4L fp16 -graphs');
  });

  it('measures only the main plans elsewhere', () => {
    expect(labels(['--ep', 'webgpu']).map(([label]) => label)).toEqual(['125M fp16', '7B-shape 4L fp16', '7B-shape 4L int4']);
    expect(labels(['--ep', 'cuda', '--runtime', 'js'])).toHaveLength(3);
    expect(() => parseArgs(['--cuda-graphs', 'maybe'])).toThrow('--cuda-graphs must be on, off or both');
  });
});
