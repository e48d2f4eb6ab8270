/**
 * Tolerances of the numeric tests, keyed by dtype, with the reason for each.
 * Relative error is ‖got − want‖ / ‖want‖ (test/helpers/golden.ts).
 */
export const TOLERANCE = {
  /**
   * f32 against the float64 PyTorch reference: expert matmuls accumulate in f32 over H ≤ 64 and
   * F ≤ 64 terms (error ~1e-7 relative per dot product); 1e-4 leaves room for the chain of a
   * forward and a backward without hiding a wrong formula (those are off by ≥ 1e-2).
   */
  f32: 1e-4,
} as const;

/** Relative error of two scalars; an exact 0 wanted compares absolutely. */
export function scalarError(got: number, want: number): number {
  return want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want);
}
