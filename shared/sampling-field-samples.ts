// Test support: values at the edges of a sampling field's range, for the contract tests of the two schemas
// built from the field table (gpu-backend/src/server/request-schema.test.ts, edge/src/api/sampling-fields.test.ts).

import type { SamplingFieldSpec } from './sampling-fields';

/** A value the row accepts on that side, at the top of its range where it has one. */
export function inRange(spec: SamplingFieldSpec, side: 'public' | 'protocol'): unknown {
  if (spec.kind === 'boolean') return true;
  if (spec.kind === 'tokenIds') return [1];
  const max = side === 'public' ? (spec.publicMax ?? spec.max) : spec.max;
  return max ?? (spec.min ?? spec.above ?? 0) + 1;
}

/** A value just past the row's range on that side (above the top, else at or below the bottom); null when unbounded. */
export function pastRange(spec: SamplingFieldSpec, side: 'public' | 'protocol'): unknown {
  if (spec.kind === 'boolean' || spec.kind === 'tokenIds') return 'yes';
  const max = side === 'public' ? (spec.publicMax ?? spec.max) : spec.max;
  if (max !== undefined && max < Number.MAX_SAFE_INTEGER) return max + 1;
  if (spec.above !== undefined) return spec.above;
  return spec.min !== undefined ? spec.min - 1 : null;
}

/** The param of the 400 that `run` throws, or null when it does not throw. */
export function refusalParam(run: () => unknown): string | null {
  try {
    run();
  } catch (error) {
    const refusal = error as { status?: number; param?: string | null };
    if (refusal.status === 400 && refusal.param !== undefined) return refusal.param;
    throw error;
  }
  return null;
}
