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
  /**
   * precision {compute: 'bf16'}: every expert GEMM operand is rounded to 8 mantissa bits (RNE,
   * ≤ 2⁻⁹ relative per operand, ~2⁻⁹/√3 rms), accumulation stays f32. A swiglu expert chains three
   * rounded operands into y (x, w, h) and the backward three more (dy or weight·dy, w, da), so
   * ~1e-2 relative in norm on y, dx and the gradients; 2e-2 bounds that with room, and a wrong
   * formula is still off by far more. Outputs of the router alone (losses, routing weights, decisions, bias, load)
   * keep the f32 tolerance: the router is f32/float64 in every mode.
   */
  bf16: 2e-2,
  /**
   * precision {compute: 'bf16', experts: 'fp8'}: the forward GEMMs read x and h as e4m3 with one
   * f32 scale per 1×128 block and the weights per 128×128 block: 3 mantissa bits, ≤ 2⁻⁴ relative
   * per element at the top of a block and coarser for elements far below the block's amax
   * (~2.5% rms per operand). Three quantised operands reach y, so ~5% relative; the backward is
   * bf16 but differentiates at the quantised forward's pre-activations. 0.1 bounds that.
   */
  fp8: 1e-1,
  /**
   * A cuda device against the cpu in one mode: both feed their GEMMs the same operand values
   * (core/precision.h), only the f32 summation order differs — f32: ~1e-6. In bf16 and fp8 an
   * intermediate (a1, a3, h) that lands within an f32 ulp of a bf16 / e4m3 rounding boundary can
   * round the other way on one device (≤ 2⁻⁹ resp. 2⁻⁴ relative on that element), which a few
   * elements out of thousands turn into ~1e-4 resp. ~1e-3 relative in norm.
   */
  crossDevice: { f32: 1e-4, bf16: 1e-3, fp8: 1e-2 },
} as const;

/** The config.precision of each mode the golden and precision suites run. */
export const PRECISION_MODES = {
  f32: { compute: 'f32' },
  bf16: { compute: 'bf16' },
  fp8: { compute: 'bf16', experts: 'fp8' },
} as const;
export type PrecisionMode = keyof typeof PRECISION_MODES;

/** Relative error of two scalars; an exact 0 wanted compares absolutely. */
export function scalarError(got: number, want: number): number {
  return want === 0 ? Math.abs(got) : Math.abs(got - want) / Math.abs(want);
}
