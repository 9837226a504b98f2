// How much of the machine's CPU other processes take: from /proc/stat busy time minus what our own
// measured process reported using. A benchmark round that shared the CPU is marked (or refused).

import { readFileSync } from 'node:fs';
import os from 'node:os';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** Busy CPU seconds of the whole machine since boot (all cores; idle and iowait excluded). */
export function machineBusySeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0); // user nice system idle iowait irq softirq steal
  return (total - fields[3] - fields[4]) / TICKS_PER_SECOND;
}

/** Share of all cores (0..1) used by others over a window where we used `ownCpuSeconds`. */
export function othersShare(busyBefore: number, busyAfter: number, wallSeconds: number, ownCpuSeconds: number): number {
  return Math.max(0, busyAfter - busyBefore - ownCpuSeconds) / (wallSeconds * os.availableParallelism());
}

/** Share of all cores busy over `seconds` while we idle (the event loop waits on a timer, using ~nothing). */
export async function idleShare(seconds: number): Promise<number> {
  const before = machineBusySeconds();
  const start = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return othersShare(before, machineBusySeconds(), (performance.now() - start) / 1000, 0);
}

/** Waits until others use at most `limit` of the CPU over a 2 s window, up to `timeoutSeconds`; returns the last share seen. */
export async function waitForQuietCpu(limit: number, timeoutSeconds: number): Promise<number> {
  const deadline = performance.now() + timeoutSeconds * 1000;
  let share = await idleShare(2);
  while (share > limit && performance.now() < deadline) share = await idleShare(2);
  return share;
}
