/**
 * ops (DESIGN §2): the layer's stages as standalone, stateless functions — route, permute,
 * unpermute, groupedGemm. Each returns fresh tensors and a `backward(...)` that gives the input
 * gradients. Arguments are checked here (typed errors naming the argument) and again in native
 * code (native/addon/ops.cc).
 *
 * Layouts (Megatron's permute/unpermute, DeepGEMM's m-grouped contiguous NT GEMM):
 *   permute      x [T,H], experts i32 [T,k] (−1 = dropped slot)  → rows [n,H] sorted by expert,
 *                token order within an expert; rowToken i32 [n] = token of each row; counts i32 [E]
 *   unpermute    y[rowToken[r]] += weights[r] · rows[r]         rows [n,H] → y [T,H]
 *   groupedGemm  out_g = a_g · w_gᵀ, a [M,K] split into consecutive groups of groupSizes rows,
 *                w [G,N,K] (nn.Linear orientation) → out f32 [M,N]; a and w both f32, or both bf16
 *                (bf16 products are exact in f32: the f32 GEMM over their values, f32 accumulation;
 *                the backward's da and dw are f32)
 *   quantizeFp8, groupedGemmFp8  FP8 block quantisation and the block-scaled grouped GEMM (F1–F3),
 *                forward only (no backward): native/cpu/fp8.h on the cpu
 *
 * Devices (DESIGN §2b): every op takes tensors on one device, cpu or cuda:N (DeviceError naming the
 * first operand on another), and returns tensors on that device. On cuda, quantizeFp8 and
 * groupedGemmFp8 run CUDA kernels on the device; the other ops have no device kernel yet and are
 * staged through the host: their inputs are copied down (each copy waits), the cpu math runs, and
 * the results are copied up once.
 */
import { MoEConfig, RouterConfig, validateConfig } from './config';
import { DType } from './dtype';
import { ArgumentError, DTypeError, ShapeError } from './errors';
import { native } from './native';
import { Tensor } from './tensor';
import { checkDim, checkSameDevice, checkTensor, hostValues } from './tensor-checks';
import { MAX_ELEMENTS, checkInteger, checkKeys, checkObject, checkSeed, checkSizes, describe } from './validate';

/** Every entry of an i32 tensor in [lo, hi) (a cuda tensor's are copied down to be checked). */
function checkIndexRange(t: Tensor, name: string, lo: number, hi: number, hiWhat: string, note = ''): void {
  const values = hostValues(t);
  const cols = t.shape.length === 2 ? t.shape[1] : 1;
  for (let i = 0; i < values.length; i++) {
    if (values[i] < lo || values[i] >= hi) {
      const at = t.shape.length === 2 ? `${Math.floor(i / cols)}, ${i % cols}` : `${i}`;
      throw new ArgumentError(`${name}[${at}] must be in [${lo}, ${hiWhat} = ${hi})${note}, got ${values[i]}`);
    }
  }
}

// ---- permute / unpermute --------------------------------------------------------------------------

export interface PermuteResult {
  /** [n,H] the rows of x, grouped by expert (expert 0 first), token order within an expert. */
  output: Tensor;
  /** i32 [n] the token each row came from. */
  rowToken: Tensor;
  /** i32 [E] rows per expert: the groupSizes of groupedGemm. */
  counts: Tensor;
  /** dOutput [n,H] → dx [T,H] (rows of the same token summed). Uses rowToken: keep it alive. */
  backward(dOutput: Tensor): Tensor;
}

function permute(x: Tensor, experts: Tensor, numExperts: number): PermuteResult {
  const xt = checkTensor(x, 'x', 'f32', 2);
  const et = checkTensor(experts, 'experts', 'i32', 2);
  const E = checkInteger(numExperts, 'numExperts', 1);
  const [T, H] = xt.shape;
  if (H < 1) throw new ShapeError(`x has shape [${xt.shape.join(', ')}]: the hidden size must be at least 1`);
  checkDim(et, 'experts', 0, T, 'T = x.shape[0]');
  checkSameDevice(['x', xt], ['experts', et]);
  checkIndexRange(et, 'experts', -1, E, 'numExperts', ' (-1 = dropped)');
  const r = native.permute(xt.handle, et.handle, E);
  const rowToken = Tensor.wrap(r.rowToken);
  const n = rowToken.shape[0];
  return {
    output: Tensor.wrap(r.output),
    rowToken,
    counts: Tensor.wrap(r.counts),
    backward(dOutput: Tensor): Tensor {
      const d = checkTensor(dOutput, 'dOutput', 'f32', 2);
      checkDim(d, 'dOutput', 0, n, 'n = output.shape[0]');
      checkDim(d, 'dOutput', 1, H, 'H = x.shape[1]');
      const rt = checkTensor(rowToken, 'rowToken', 'i32', 1);
      checkSameDevice(['dOutput', d], ['rowToken', rt]);
      return Tensor.wrap(native.permuteBackward(d.handle, rt.handle, T));
    },
  };
}

export interface UnpermuteResult {
  /** [T,H]: y[rowToken[r]] += weights[r] · rows[r]; tokens without rows stay 0. */
  output: Tensor;
  /** dOutput [T,H] → dRows [n,H] and dWeights [n] (null when weights was null). */
  backward(dOutput: Tensor): { dRows: Tensor; dWeights: Tensor | null };
}

function unpermute(rows: Tensor, rowToken: Tensor, weights: Tensor | null, tokens: number): UnpermuteResult {
  const rt = checkTensor(rows, 'rows', 'f32', 2);
  const [n, H] = rt.shape;
  if (H < 1) throw new ShapeError(`rows has shape [${rt.shape.join(', ')}]: the hidden size must be at least 1`);
  const tt = checkTensor(rowToken, 'rowToken', 'i32', 1);
  checkDim(tt, 'rowToken', 0, n, 'n = rows.shape[0]');
  let wt: Tensor | null = null;
  if (weights !== null && weights !== undefined) {
    wt = checkTensor(weights, 'weights', 'f32', 1);
    checkDim(wt, 'weights', 0, n, 'n = rows.shape[0]');
  }
  const T = checkInteger(tokens, 'tokens', 0, Math.floor(MAX_ELEMENTS / H));
  checkSameDevice(['rows', rt], ['rowToken', tt], ['weights', wt]);
  checkIndexRange(tt, 'rowToken', 0, T, 'tokens');
  const output = Tensor.wrap(native.unpermute(rt.handle, tt.handle, wt ? wt.handle : null, T));
  return {
    output,
    backward(dOutput: Tensor) {
      const d = checkTensor(dOutput, 'dOutput', 'f32', 2);
      checkDim(d, 'dOutput', 0, T, 'T = tokens');
      checkDim(d, 'dOutput', 1, H, 'H = rows.shape[1]');
      checkSameDevice(['dOutput', d], ['rows', rt]);
      const r = native.unpermuteBackward(
        d.handle,
        checkTensor(tt, 'rowToken', 'i32', 1).handle,
        wt ? checkTensor(wt, 'weights', 'f32', 1).handle : null,
        checkTensor(rt, 'rows', 'f32', 2).handle,
      );
      return { dRows: Tensor.wrap(r.dRows), dWeights: r.dWeights ? Tensor.wrap(r.dWeights) : null };
    },
  };
}

// ---- grouped GEMM ----------------------------------------------------------------------------------

export interface GroupedGemmResult {
  /** [M,N]: rows of group g times w[g]ᵀ. */
  output: Tensor;
  /** dOut [M,N] → da [M,K] = dOut_g · w_g, dw [G,N,K] with dw_g = dOut_gᵀ · a_g. */
  backward(dOut: Tensor): { da: Tensor; dw: Tensor };
}

function groupedGemm(a: Tensor, w: Tensor, groupSizes: number[]): GroupedGemmResult {
  const dtype: DType = Tensor.isTensor(a) && !a.disposed && a.dtype === 'bf16' ? 'bf16' : 'f32';
  const at = checkTensor(a, 'a', dtype, 2);
  const wt = checkTensor(w, 'w', dtype, 3);
  const [M, K] = at.shape;
  const [G, N] = wt.shape;
  if (K < 1) throw new ShapeError(`a has shape [${at.shape.join(', ')}]: K = a.shape[1] must be at least 1`);
  if (G < 1 || N < 1) throw new ShapeError(`w has shape [${wt.shape.join(', ')}]: G and N must be at least 1`);
  checkDim(wt, 'w', 2, K, 'K = a.shape[1]');
  checkSameDevice(['a', at], ['w', wt]);
  const sizes = checkSizes(groupSizes, 'groupSizes', G, 0, M, 'M = a.shape[0]');
  if (M * N > MAX_ELEMENTS) throw new ShapeError(`the output [${M}, ${N}] exceeds the largest tensor (2^31-1 elements)`);
  const output = Tensor.wrap(native.groupedGemm(at.handle, wt.handle, sizes));
  return {
    output,
    backward(dOut: Tensor) {
      const d = checkTensor(dOut, 'dOut', 'f32', 2);
      checkDim(d, 'dOut', 0, M, 'M = a.shape[0]');
      checkDim(d, 'dOut', 1, N, 'N = w.shape[1]');
      checkSameDevice(['dOut', d], ['a', at]);
      const r = native.groupedGemmBackward(d.handle, checkTensor(at, 'a', dtype, 2).handle, checkTensor(wt, 'w', dtype, 3).handle, sizes);
      return { da: Tensor.wrap(r.da), dw: Tensor.wrap(r.dw) };
    },
  };
}

// ---- FP8 (F1–F3) ---------------------------------------------------------------------------------

/** An FP8 tensor with its block scales: each element ≈ decode(q) · the scale of its block. */
export interface Fp8Quantized {
  /** e4m3 or e5m2 codes, in the shape of the quantised tensor. */
  q: Tensor;
  /** f32 scales, one per block: [M, ceil(K/128)] for 1×128 blocks, [(G,) ceil(N/128), ceil(K/128)] for 128×128. */
  scales: Tensor;
}

export interface QuantizeFp8Options {
  /** Default 'e4m3'. A block's scale is amax / 448 (e4m3) or amax / 57344 (e5m2), 1 when that is 0. */
  format?: 'e4m3' | 'e5m2';
  /** [1,128]: activations, per row along K. [128,128]: weights, per 128×128 tile of each matrix. */
  block: [1, 128] | [128, 128];
}

const QUANTIZE_FP8_OPTIONS = ['format', 'block'] as const;

/**
 * Block quantisation (F2) of x f32 [M,K], or [G,N,K] (each of the G matrices on its own):
 * scale = amax/fmax per block, q = encode(x / scale) computed in fp32, saturating RNE (F1).
 * A size that is not a multiple of the block gets a partial last block (native/core/fp8_blocks.h).
 * On a cuda x it runs the CUDA kernel (native/cuda/quantize_fp8.h) on the device and returns q and
 * scales there, bit-equal to the cpu's.
 */
function quantizeFp8(x: Tensor, opts: QuantizeFp8Options): Fp8Quantized {
  const xt = checkTensor(x, 'x', 'f32', Tensor.isTensor(x) ? x.shape.length : 2);
  if (xt.shape.length !== 2 && xt.shape.length !== 3) {
    throw new ShapeError(`x must have 2 dimensions [M,K] or 3 [G,N,K], got shape [${xt.shape.join(', ')}]`);
  }
  const o = checkObject(opts, 'opts');
  checkKeys(o, 'opts', QUANTIZE_FP8_OPTIONS);
  const format = o.format ?? 'e4m3';
  if (format !== 'e4m3' && format !== 'e5m2') throw new ArgumentError(`opts.format must be 'e4m3' or 'e5m2', got ${describe(format)}`);
  const block = o.block;
  const blockRows = Array.isArray(block) && block.length === 2 && block[1] === 128 && (block[0] === 1 || block[0] === 128) ? block[0] : 0;
  if (blockRows === 0) {
    throw new ArgumentError(`opts.block must be [1, 128] or [128, 128], got ${Array.isArray(block) ? `[${block.join(', ')}]` : describe(block)}`);
  }
  const r = native.quantizeFp8(xt.handle, format, blockRows, xt.device);
  return { q: Tensor.wrap(r.q), scales: Tensor.wrap(r.scales) };
}

/** `value` as {q: e4m3|e5m2 tensor, scales: f32 tensor}, both of `rank` dimensions, on any device. */
function checkFp8Quantized(value: unknown, name: string, rank: number): Fp8Quantized {
  const o = checkObject(value, name);
  const q = o.q;
  const fp8 = Tensor.isTensor(q) && (q.dtype === 'e4m3' || q.dtype === 'e5m2');
  if (Tensor.isTensor(q) && !q.disposed && !fp8) throw new DTypeError(`${name}.q must be an e4m3 or e5m2 tensor, got ${q.dtype}`);
  return {
    q: checkTensor(q, `${name}.q`, fp8 ? (q as Tensor).dtype : 'e4m3', rank),
    scales: checkTensor(o.scales, `${name}.scales`, 'f32', rank),
  };
}

/**
 * The block-scaled grouped GEMM (F3), m-grouped contiguous like groupedGemm: a from
 * quantizeFp8(x [M,K], {block: [1,128]}), b from quantizeFp8(w [G,N,K], {block: [128,128]});
 * out_g [rows of g, N] = Σ over K blocks of (a·sa)(b_g·sb)ᵀ, accumulated in float64 on the CPU
 * (exact per K block for e4m3 operands), rounded to f32 once. With every operand on a cuda device
 * it runs the tensor-core kernel (native/cuda/grouped_gemm_fp8.h: e4m3 operands, compute
 * capability 8.9 or newer) and returns out on that device, equal to the cpu's within the bound
 * stated there (bit for bit when every partial sum is exact); the operands are laid out for the
 * kernel on the device.
 */
function groupedGemmFp8(a: Fp8Quantized, b: Fp8Quantized, groupSizes: number[]): Tensor {
  const at = checkFp8Quantized(a, 'a', 2);
  const bt = checkFp8Quantized(b, 'b', 3);
  const [M, K] = at.q.shape;
  const [G, N] = bt.q.shape;
  if (K < 1) throw new ShapeError(`a.q has shape [${at.q.shape.join(', ')}]: K = a.q.shape[1] must be at least 1`);
  if (G < 1 || N < 1) throw new ShapeError(`b.q has shape [${bt.q.shape.join(', ')}]: G and N must be at least 1`);
  checkDim(bt.q, 'b.q', 2, K, 'K = a.q.shape[1]');
  const kBlocks = Math.ceil(K / 128);
  checkDim(at.scales, 'a.scales', 0, M, 'M = a.q.shape[0]');
  checkDim(at.scales, 'a.scales', 1, kBlocks, 'ceil(K / 128)');
  checkDim(bt.scales, 'b.scales', 0, G, 'G = b.q.shape[0]');
  checkDim(bt.scales, 'b.scales', 1, Math.ceil(N / 128), 'ceil(N / 128)');
  checkDim(bt.scales, 'b.scales', 2, kBlocks, 'ceil(K / 128)');
  const sizes = checkSizes(groupSizes, 'groupSizes', G, 0, M, 'M = a.q.shape[0]');
  if (M * N > MAX_ELEMENTS) throw new ShapeError(`the output [${M}, ${N}] exceeds the largest tensor (2^31-1 elements)`);
  const device = checkSameDevice(['a.q', at.q], ['a.scales', at.scales], ['b.q', bt.q], ['b.scales', bt.scales]);
  return Tensor.wrap(native.groupedGemmFp8(at.q.handle, at.scales.handle, bt.q.handle, bt.scales.handle, sizes, device));
}

// ---- route -----------------------------------------------------------------------------------------

export interface RouteOptions {
  /** i32 [T]: each token's modality (R2); used when `experts` groups carry a modality. */
  modality?: Tensor;
  /** f32 [E] selection bias (R4); required when router.bias is true. */
  bias?: Tensor;
  /** f32 [E] load estimate ℓ of the sampled router (R10); default 1/E. Not modified. */
  load?: Tensor;
  /** Philox key of the sampled router (R10); default 0. Routing is at step 0. */
  seed?: number;
  /** The MoEConfig expert groups in router order (only count and modality are read); default one group of E. */
  experts?: { count: number; modality?: number }[];
  /** MoEConfig capacity (C1–C5); default dropless. */
  capacity?: MoEConfig['capacity'];
}

export interface RouteResult {
  /** i32 [T,k] chosen experts, best first (R6; C5 final experts). */
  indices: Tensor;
  /** f32 [T,k] routing weights (R7). */
  weights: Tensor;
  /** i32 [T,k] 1 = slot kept, 0 = dropped by capacity (C2–C5). */
  keep: Tensor;
  /** i32 [E] selections per expert (R6). */
  counts: Tensor;
  /** i32 [E] kept assignments per expert. */
  accepted: Tensor;
  /**
   * dWeights f32 [T,k] → dx [T,H], dWeight [E,H]: the gradient through the routing weights of the
   * kept slots (dropped slots contribute nothing). Re-runs the routing on x and weight as they are
   * then, so they must not change in between.
   */
  backward(dWeights: Tensor): { dx: Tensor; dWeight: Tensor };
}

const ROUTE_OPTIONS = ['modality', 'bias', 'load', 'seed', 'experts', 'capacity'] as const;

/**
 * One stateless routing (R1–R8, R10, C1–C5) of x [T,H] with router.weight [E,H]: a fresh router
 * (step 0, empty balance window). Routing only — the aux losses are `losses.*`. `router` is the
 * MoEConfig `router` object; expert-choice (R9) has no per-token result and is refused.
 */
function route(x: Tensor, weight: Tensor, router: RouterConfig, opts: RouteOptions = {}): RouteResult {
  const xt = checkTensor(x, 'x', 'f32', 2);
  const wt = checkTensor(weight, 'weight', 'f32', 2);
  const [T, H] = xt.shape;
  if (H < 1) throw new ShapeError(`x has shape [${xt.shape.join(', ')}]: the hidden size must be at least 1`);
  checkDim(wt, 'weight', 1, H, 'H = x.shape[1]');
  const o = checkObject(opts, 'opts');
  checkKeys(o, 'opts', ROUTE_OPTIONS);
  const r = checkObject(router, 'router');
  if (r.type === 'expert-choice') {
    throw new ArgumentError("router.type 'expert-choice' selects tokens per expert (R9) and has no per-token top-k result; use MoELayer for expert-choice routing");
  }
  let groups: MoEConfig['experts'];
  if (o.experts === undefined) {
    if (wt.shape[0] < 1) throw new ShapeError(`weight has shape [${wt.shape.join(', ')}]: it needs at least one expert row`);
    groups = [{ name: 'experts', count: wt.shape[0], ffnHidden: 1 }];
  } else {
    if (!Array.isArray(o.experts)) throw new ArgumentError(`opts.experts must be an array of {count, modality?}, got ${describe(o.experts)}`);
    groups = o.experts.map((g: unknown, i: number) => {
      const group = checkObject(g, `opts.experts[${i}]`);
      return { name: `group${i}`, count: group.count as number, ffnHidden: 1, ...(group.modality === undefined ? {} : { modality: group.modality as number }) };
    });
  }
  const config: Record<string, unknown> = { hidden: H, experts: groups, activation: 'swiglu', router: r };
  if (o.capacity !== undefined) config.capacity = o.capacity;
  if (o.seed !== undefined) config.seed = checkSeed(o.seed, 'opts.seed');
  const { spec } = validateConfig(config);
  const E = spec.groups.reduce((sum, g) => sum + g.count, 0);
  checkDim(wt, 'weight', 0, E, 'E (the experts of opts.experts)');
  const tensorOpt = (key: 'bias' | 'load' | 'modality', dtype: DType, size: number, what: string) => {
    if (o[key] === undefined || o[key] === null) return null;
    const t = checkTensor(o[key], `opts.${key}`, dtype, 1);
    checkDim(t, `opts.${key}`, 0, size, what);
    return t;
  };
  const bias = tensorOpt('bias', 'f32', E, 'E = weight.shape[0]');
  const load = tensorOpt('load', 'f32', E, 'E = weight.shape[0]');
  const modality = tensorOpt('modality', 'i32', T, 'T = x.shape[0]');
  if (spec.router.useBias && !bias) throw new ArgumentError('opts.bias must be an f32 Tensor [E] when router.bias is true (R4), got undefined');
  checkSameDevice(['x', xt], ['weight', wt], ['opts.bias', bias], ['opts.load', load], ['opts.modality', modality]);
  const handles = () => ({
    bias: bias ? checkTensor(bias, 'opts.bias', 'f32', 1).handle : null,
    load: load ? checkTensor(load, 'opts.load', 'f32', 1).handle : null,
    modality: modality ? checkTensor(modality, 'opts.modality', 'i32', 1).handle : null,
  });
  const out = native.route(xt.handle, wt.handle, spec, handles());
  const k = spec.router.topK;
  return {
    indices: Tensor.wrap(out.indices),
    weights: Tensor.wrap(out.weights),
    keep: Tensor.wrap(out.keep),
    counts: Tensor.wrap(out.counts),
    accepted: Tensor.wrap(out.accepted),
    backward(dWeights: Tensor) {
      const d = checkTensor(dWeights, 'dWeights', 'f32', 2);
      checkDim(d, 'dWeights', 0, T, 'T = x.shape[0]');
      checkDim(d, 'dWeights', 1, k, 'k = router.topK');
      checkSameDevice(['x', xt], ['dWeights', d]);
      const g = native.routeBackward(checkTensor(xt, 'x', 'f32', 2).handle, checkTensor(wt, 'weight', 'f32', 2).handle, spec, handles(), d.handle);
      return { dx: Tensor.wrap(g.dx), dWeight: Tensor.wrap(g.dWeight) };
    },
  };
}

export const ops = { route, permute, unpermute, groupedGemm, quantizeFp8, groupedGemmFp8 };
