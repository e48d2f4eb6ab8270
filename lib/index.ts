/** moekit: Mixture-of-Experts kernels behind Node-API (DESIGN §2 is the binding surface). */
export { Tensor } from './tensor';
export type { TensorData, TensorOptions, RandnOptions, TensorView } from './tensor';
export type { DType } from './dtype';
export { devices, buildInfo } from './devices';
export type { Device, DeviceSpec } from './devices';
export { saveSafetensors, loadSafetensors, serializeSafetensors, parseSafetensors } from './safetensors';
export type { Safetensors } from './safetensors';
export {
  MoekitError,
  ShapeError,
  DTypeError,
  DeviceError,
  MoEConfigError,
  CommError,
  DisposedError,
  FormatError,
  ArgumentError,
  NumericsError,
} from './errors';
export type { NumericsStage, NumericsDetails } from './errors';
export { availableMemory, liveBytes } from './memory';
export { cuda } from './cuda';
export type { CudaStats } from './cuda';
export { MoELayer } from './layer';
export type { ForwardOptions, LayerOptions, MoEOutput, ExpertStats, ExpertRange, ExchangeStats } from './layer';
export type { MoEConfig, ExpertGroupConfig, RouterConfig, ParallelConfig, ParallelSetup } from './config';
export { ops } from './ops';
export type { PermuteResult, UnpermuteResult, GroupedGemmResult, RouteOptions, RouteResult, Fp8Quantized, QuantizeFp8Options } from './ops';
export { losses } from './losses';
export type { LoadBalanceOptions, OrthogonalityOptions, OrthogonalityMode } from './losses';
export { AdamW } from './optim';
export type { AdamWOptions, Trainable } from './optim';
export { dist, Communicator } from './dist';
export type { CommBackend, ReduceOp, DistInitOptions, AllToAllVResult } from './dist';
export { ExpertMonitor, mergeExpertStats, loadImbalance, stepRates } from './monitor';
export type { ExpertMonitorOptions, MonitorRecord, StepRates, LayerSummary, PrometheusOptions, HeatmapOptions } from './monitor';
