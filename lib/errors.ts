/**
 * Typed errors (DESIGN §4). Every misuse throws one of these with a message that names the
 * argument, what was expected and what was received. The addon throws the same classes
 * (lib/native.ts registers them), so a caller can rely on `instanceof` wherever a failure starts.
 */
export class MoekitError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A tensor's shape, a dimension or a length does not fit. */
export class ShapeError extends MoekitError {}
/** A dtype is unknown or not accepted by the operation. */
export class DTypeError extends MoekitError {}
/** A device is unknown, not available, or tensors live on different devices. */
export class DeviceError extends MoekitError {}
/** A MoEConfig field is missing, out of range or contradicts another. */
export class MoEConfigError extends MoekitError {}
/** A collective failed or a communicator was misused. */
export class CommError extends MoekitError {}
/** A disposed tensor (or other released resource) was used. */
export class DisposedError extends MoekitError {}
/** A file is malformed or truncated (safetensors). */
export class FormatError extends MoekitError {}
/** Any other bad argument: wrong type, out of range. */
export class ArgumentError extends MoekitError {}

/** Where checkFinite found the first NaN or Inf (lib/layer.ts, in pipeline order). */
export type NumericsStage = 'input' | 'router.bias' | 'router.load' | 'router.weight' | 'router' | 'expert' | 'shared' | 'grad' | 'dx';

/** Details of a NumericsError; `expert` is the group name and index within the group. */
export interface NumericsDetails {
  layer?: string;
  stage?: NumericsStage;
  token?: number;
  expert?: { group: string; index: number };
  /** The parameter whose gradient is non-finite (stage 'grad'), or the state tensor (stages 'router.bias', 'router.load'). */
  parameter?: string;
}

/** checkFinite found a NaN or an Inf: the message and the fields name the layer, the stage and the expert. */
export class NumericsError extends MoekitError {
  readonly layer?: string;
  readonly stage?: NumericsStage;
  readonly token?: number;
  readonly expert?: { group: string; index: number };
  readonly parameter?: string;

  constructor(message: string, details: NumericsDetails = {}) {
    super(message);
    Object.assign(this, details);
  }
}

/** The classes the addon throws, keyed by their names. */
export const errorClasses = {
  ShapeError,
  DTypeError,
  DeviceError,
  MoEConfigError,
  CommError,
  DisposedError,
  FormatError,
  ArgumentError,
};
