// One line naming the machine a benchmark ran on: lscpu's model name is often just "AMD EPYC" on cloud
// VMs, so the CPU family/model (which tell Zen 2/3/4/5 apart) and AVX-512 support are added.

import { readFileSync } from 'node:fs';
import os from 'node:os';

export function machineDescription(): string {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(cpuinfo)?.[1]?.trim() ?? '?';
  const avx512 = /\bavx512f\b/.test(field('flags')) ? 'AVX-512' : /\bavx2\b/.test(field('flags')) ? 'AVX2, no AVX-512' : 'no AVX2';
  return `${field('model name')} (family ${field('cpu family')} model ${field('model')}, ${avx512}), ${os.availableParallelism()} vCPU, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`;
}
