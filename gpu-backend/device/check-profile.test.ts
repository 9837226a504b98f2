// The profile summary of the device check: ONNX Runtime profile events summed per operator and provider.

import { describe, expect, it } from 'vitest';
import { summarizeProfile } from './check-profile';

describe('summarizeProfile', () => {
  it('sums node events per operator and provider, largest first, ignoring session events', () => {
    const events = [
      { cat: 'Session', name: 'model_run', dur: 9000 },
      { cat: 'Node', name: 'a_kernel_time', dur: 1500, args: { op_name: 'MatMul', provider: 'WebGpuExecutionProvider' } },
      { cat: 'Node', name: 'b_kernel_time', dur: 2500, args: { op_name: 'MatMul', provider: 'WebGpuExecutionProvider' } },
      { cat: 'Node', name: 'c_kernel_time', dur: 3000, args: { op_name: 'ScatterND', provider: 'WebGpuExecutionProvider' } },
      { cat: 'Node', name: 'd_kernel_time', dur: 500, args: { op_name: 'MatMul', provider: 'CPUExecutionProvider' } },
    ];
    expect(summarizeProfile(events)).toEqual([
      { opType: 'MatMul', provider: 'WebGpuExecutionProvider', milliseconds: 4, calls: 2 },
      { opType: 'ScatterND', provider: 'WebGpuExecutionProvider', milliseconds: 3, calls: 1 },
      { opType: 'MatMul', provider: 'CPUExecutionProvider', milliseconds: 0.5, calls: 1 },
    ]);
  });
});
