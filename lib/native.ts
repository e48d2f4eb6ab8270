/**
 * The addon's surface in TypeScript, one declaration per native class or function
 * (native/addon/*.cc), and the loader.
 *
 * Loading order (node-gyp-build): build/Release/moekit.node when the package was built from
 * source, otherwise prebuilds/<platform>-<arch>/moekit.node. A failure lists what was tried.
 * MOEKIT_ADDON_PATH=<file.node> loads that binary instead (the sanitizer build of
 * scripts/sanitize.sh, for example); MOEKIT_EMULATE_CUDA=1 loads build/Release/emulated/moekit.node,
 * the build whose CUDA code runs on the SIMT emulator (DESIGN §5; built from a checkout).
 */
import * as fs from 'fs';
import * as path from 'path';
import { errorClasses } from './errors';

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: number;
  readonly disposed: boolean;
  readonly nbytes: number;
  /** 'cpu' or 'cuda:N': where the storage lives. */
  readonly device: string;
  view(): ArrayBuffer;
  toArray(): Float32Array | Int32Array | Uint8Array;
  cast(dtype: number, device?: string): NativeTensor;
  /** Every byte 0, on the tensor's device. */
  zero(): void;
  /** Overwrites the storage with the bytes of `data` (byteLength = nbytes). */
  write(data: ArrayBufferView): void;
  /** Overwrites the storage with source's (same dtype and shape, any device). */
  copyFrom(source: NativeTensor): void;
  dispose(): void;
}

export interface NativeTensorClass {
  new (dtype: number, shape: number[], device?: string): NativeTensor;
  fromData(data: ArrayBufferView, dtype: number, shape: number[], raw: boolean, device?: string): NativeTensor;
  randn(shape: number[], seed: number, std: number, dtype: number, device?: string): NativeTensor;
}

/** One forward's results (native/addon/layer.cc). */
export interface NativeForward {
  y: NativeTensor;
  indices: NativeTensor;
  weights: NativeTensor;
  keep: NativeTensor;
  counts: NativeTensor;
  accepted: NativeTensor;
  dropped: NativeTensor;
  assignToken: NativeTensor;
  assignExpert: NativeTensor;
  assignWeight: NativeTensor;
  flops: number[];
  sharedFlops: number;
  f: Float64Array;
  P: Float64Array;
  maxVio: number;
  cv: number;
  entropy: number;
  balance: number;
  z: number;
  orthogonality: number;
  aux: number;
  /** checkFinite: the first stage of the forward that produced a NaN or Inf (native/layer/moe_layer.h). */
  nonFinite: { stage: 'router.weight' | 'router' | 'expert' | 'shared'; token: number; expert: number } | null;
  /** The expert path that ran (native/addon/layer.cc precisionObject). */
  precision: ExpertPrecision;
}

/** Numerics of the expert GEMMs in a forward (README "The MoE layer", precision). */
export interface ExpertPrecision {
  compute: 'f32' | 'bf16';
  experts: 'same' | 'fp8';
  /** The backend that ran them. */
  device: 'cpu' | 'cuda';
  /**
   * The expert GEMM kernels: 'cpu' on the cpu; on cuda 'f32-simt' (f32 SIMT kernels: the f32 mode,
   * and fp8 on a device below compute capability 8.9, which has no fp8 mma and is fed the e4m3
   * block values forward, the bf16 values backward) or 'tensor-core' (forward: the bf16 mma GEMMs
   * in bf16, the e4m3 ones in fp8; backward: the bf16 mma NN/TN GEMMs in both) or
   * 'tensor-core-wgmma' (fp8 on compute capability 9.0 with the sm_90a code: the forward's e4m3
   * GEMMs on warpgroup MMA, the rest as 'tensor-core'; MOEKIT_FP8_KERNEL=mma.sync selects
   * 'tensor-core' there).
   */
  gemm: 'cpu' | 'f32-simt' | 'tensor-core' | 'tensor-core-wgmma';
}

export interface NativeMoELayer {
  step: number;
  /** R10's Philox key, an integer in [0, 2^53-1]: spec.router.seed until set from a state dict. */
  seed: number;
  forward(x: NativeTensor, modality: NativeTensor | null, seqLens: number[] | null, training: boolean, checkFinite: boolean): NativeForward;
  backward(dy: NativeTensor): NativeTensor;
  endStep(): void;
  /** comm: the data-parallel group, or null for the layer's own (native/layer/moe_layer.h). */
  allReduceGrads(comm: NativeCommunicator | null): void;
  /** Per destination rank, since construction; null without parallel.expert. */
  exchangeStats(): { messages: number[]; bytes: number[]; hierarchical: boolean } | null;
}

type ExpertHandles = { w1: NativeTensor; w3?: NativeTensor; w2: NativeTensor };

export interface NativeMoELayerClass {
  new (
    spec: object,
    params: { routerWeight: NativeTensor; routerBias: NativeTensor; routerLoad: NativeTensor; groups: ExpertHandles[]; shared?: ExpertHandles },
    grads: { routerWeight: NativeTensor; groups: ExpertHandles[]; shared?: ExpertHandles },
    parallel?: { expert?: NativeCommunicator; data?: NativeCommunicator; ranksPerNode?: number },
  ): NativeMoELayer;
}

/** A communicator (native/addon/comm.cc): collectives take tensors and return new ones. */
export interface NativeCommunicator {
  readonly rank: number;
  readonly size: number;
  readonly backend: string;
  readonly timeoutMs: number;
  readonly closed: boolean;
  allReduce(t: NativeTensor, op: string): NativeTensor;
  allGather(t: NativeTensor): NativeTensor;
  reduceScatter(t: NativeTensor, op: string): NativeTensor;
  broadcast(t: NativeTensor, root: number): NativeTensor;
  allToAllV(t: NativeTensor, sendCounts: number[]): { tensor: NativeTensor; recvCounts: number[] };
  barrier(): void;
  split(color: number, key: number): NativeCommunicator;
  abort(reason: string): void;
  close(): void;
}

export interface NativeCommunicatorClass {
  new (opts: { backend: string; rank?: number; size?: number; id?: Uint8Array; timeoutMs?: number; device?: number }): NativeCommunicator;
  ncclUniqueId(): Uint8Array;
}

export interface NativeDevice {
  kind: 'cpu' | 'cuda';
  index?: number;
  name?: string;
  computeCapability?: number;
  totalMemory?: number;
  emulated?: boolean;
}

export interface NativeBuildInfo {
  cuda: boolean;
  cudaArchitectures: string;
  emulated: boolean;
  /** The communicator backends compiled in: 'local', then 'mpi' and 'nccl' when present. */
  commBackends: string[];
}

export interface NativeAddon {
  NativeTensor: NativeTensorClass;
  NativeMoELayer: NativeMoELayerClass;
  NativeCommunicator: NativeCommunicatorClass;
  setErrorClasses(classes: typeof errorClasses): void;
  devices(): NativeDevice[];
  buildInfo(): NativeBuildInfo;
  liveBytes(): number;
  availableMemory(): number;
  /** 'cuda:N' (native/addon/devices.cc); DeviceError without a CUDA backend. */
  cudaStats(device: string): import('./cuda').CudaStats;
  cudaResetStats(device: string): void;
  cudaSynchronize(device: string): void;
  /** The emulated build only: the compute capability its device reports (80, 86, 89, 90; 0 = MOEKIT_EMU_SM). */
  setEmulatedComputeCapability?(cc: number): void;

  // Stateless ops (native/addon/ops.cc): fresh tensors out on the inputs' device (all on one), inputs unchanged.
  permute(x: NativeTensor, experts: NativeTensor, numExperts: number): { output: NativeTensor; rowToken: NativeTensor; counts: NativeTensor };
  permuteBackward(dOutput: NativeTensor, rowToken: NativeTensor, tokens: number): NativeTensor;
  unpermute(rows: NativeTensor, rowToken: NativeTensor, weights: NativeTensor | null, tokens: number): NativeTensor;
  unpermuteBackward(
    dOutput: NativeTensor, rowToken: NativeTensor, weights: NativeTensor | null, rows: NativeTensor,
  ): { dRows: NativeTensor; dWeights: NativeTensor | null };
  groupedGemm(a: NativeTensor, w: NativeTensor, groupSizes: number[]): NativeTensor;
  groupedGemmBackward(dOut: NativeTensor, a: NativeTensor, w: NativeTensor, groupSizes: number[]): { da: NativeTensor; dw: NativeTensor };
  /** x f32 [M,K] or [G,N,K] → q (e4m3|e5m2, shape of x), scales f32 [(G,) ceil(rows/blockRows), ceil(K/128)]; blockRows 1 or 128. */
  quantizeFp8(x: NativeTensor, format: 'e4m3' | 'e5m2', blockRows: number, device: string): { q: NativeTensor; scales: NativeTensor };
  /** aq [M,K], aScales [M, ceil(K/128)], bq [G,N,K], bScales [G, ceil(N/128), ceil(K/128)] → f32 [M,N] (F3, float64 accumulation). */
  groupedGemmFp8(aq: NativeTensor, aScales: NativeTensor, bq: NativeTensor, bScales: NativeTensor, groupSizes: number[], device: string): NativeTensor;
  loadBalance(probs: NativeTensor, counts: NativeTensor, topK: number, coeff: number, tokens: number): { loss: number; dProbs: NativeTensor };
  zLoss(logits: NativeTensor, coeff: number): { loss: number; dLogits: NativeTensor };
  /** mode: 0 all, 1 perGroup, 2 crossGroup. */
  routerOrthogonality(weight: NativeTensor, coeff: number, mode: number, groupSizes: number[]): { loss: number; dWeight: NativeTensor };
  /** Updates param, m and v in place; step is 1-based; device 'cpu' or 'cuda:N', where all four are (cuda: the kernel on the device memory). */
  adamwStep(
    param: NativeTensor, grad: NativeTensor, m: NativeTensor, v: NativeTensor,
    config: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number }, step: number, device: string,
  ): void;
  /** spec: the flat spec of lib/config.ts (its loss coefficients are ignored); expert-choice is refused. */
  route(
    x: NativeTensor, weight: NativeTensor, spec: object,
    opts: { bias: NativeTensor | null; load: NativeTensor | null; modality: NativeTensor | null },
  ): { indices: NativeTensor; weights: NativeTensor; keep: NativeTensor; counts: NativeTensor; accepted: NativeTensor };
  routeBackward(
    x: NativeTensor, weight: NativeTensor, spec: object,
    opts: { bias: NativeTensor | null; load: NativeTensor | null; modality: NativeTensor | null }, dWeights: NativeTensor,
  ): { dx: NativeTensor; dWeight: NativeTensor };
}

/** The package root: the nearest folder above this file whose package.json is moekit's. */
export function packageRoot(from: string = __dirname): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest) && JSON.parse(fs.readFileSync(manifest, 'utf8')).name === 'moekit') return dir;
    if (path.dirname(dir) === dir) throw new Error(`moekit: no package.json of moekit above ${from}`);
  }
}

function load(): NativeAddon {
  const root = packageRoot();
  const override =
    process.env.MOEKIT_ADDON_PATH ?? (process.env.MOEKIT_EMULATE_CUDA === '1' ? path.join(root, 'build', 'Release', 'emulated', 'moekit.node') : undefined);
  let addon: NativeAddon;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    addon = (override ? require(path.resolve(override)) : require('node-gyp-build')(root)) as NativeAddon;
  } catch (error) {
    const tried = process.env.MOEKIT_ADDON_PATH
      ? `MOEKIT_ADDON_PATH=${override}`
      : override
        ? `the emulated-CUDA build ${override} (MOEKIT_EMULATE_CUDA=1; built from a checkout, which has test/)`
        : `build/Release and prebuilds/${process.platform}-${process.arch}`;
    throw new Error(
      `moekit: could not load the native addon from ${root} (tried ${tried}). ` +
        `Build it with "npm run build:native". Cause: ${(error as Error).message}`,
    );
  }
  addon.setErrorClasses(errorClasses);
  // The emulator reads MOEKIT_EMU_SM with getenv, which does not see a change made to process.env
  // inside a jest sandbox: pass the JavaScript value on (jest.config.js, cuda-emulated-sm90).
  if (addon.setEmulatedComputeCapability && process.env.MOEKIT_EMU_SM) {
    const cc = Number(process.env.MOEKIT_EMU_SM);
    addon.setEmulatedComputeCapability(Number.isInteger(cc) && cc !== 0 ? cc : -1);  // -1: refused, naming the value range
  }
  return addon;
}

export const native: NativeAddon = load();
