/**
 * MoELayer (DESIGN §2–§3): routing, capacity, experts, shared experts and the aux losses, forward
 * and backward, on the native layer (native/layer/moe_layer.h). Parameters live in tensors the
 * layer owns: `parameters()` and `grads()` return those very tensors (zero-copy), so optimisers
 * and users update them in place; disposing one makes the layer refuse to run.
 *
 * Initialisation (seeded by config.seed through Philox, the k-th tensor keyed (1000·seed + k) mod 2^53):
 * router.weight ~ N(0, 1/H),
 * w1, w3 ~ N(0, 1/H), w2 ~ N(0, 1/F); router.bias = 0; router.load = 1/E (R10).
 *
 * Numerics guard (opt-in, `new MoELayer(config, {name, checkFinite: true})` or per forward with
 * `opts.checkFinite`): a NaN or Inf throws NumericsError naming the layer, the first stage that
 * produced one and the expert. Forward, in pipeline order: x ('input'); before the router runs, the
 * router state ('router.bias', then 'router.load': the entry and its expert; DESIGN §4 wants both
 * finite) and router.weight rows ('router.weight'); the routing weights and aux loss ('router'),
 * y after the routed experts ('expert': the token's expert whose own output is non-finite), y after
 * the shared experts ('shared'). The backward of a checked forward: dy ('input'), then every
 * gradient accumulator ('grad': expert groups, shared, router.weight; the expert from the index),
 * then dx ('dx'). 'input', 'router.bias' and 'router.load' are found before any state changes;
 * after a failed forward no backward may follow. Off, nothing is scanned.
 *
 * Parallel (config.parallel, DESIGN §2; README "Multi-process"). Every rank builds the layer with
 * the same config and calls forward, backward, endStep and allReduceGrads together (collectives).
 * With `expert` (P ranks) this rank's parameters(), grads() and stateDict() hold its block of
 * Eg/P experts of every group (expertRange()); initialisation draws the full tensors from the seed
 * and keeps the block, so every layout starts from the same model. With any group, the balance
 * window sums its counts over the ranks that hold different tokens, and the losses (and their
 * gradients) are this rank's token share: Σ over ranks of (Σ y·dy + aux) is the whole batch's
 * objective, and allReduceGrads() sums the gradients into the whole batch's.
 */
import { ArgumentError, DeviceError, DisposedError, DTypeError, MoEConfigError, NumericsDetails, NumericsError, ShapeError } from './errors';
import { DeviceSpec } from './devices';
import { FlatSpec, MoEConfig, ParallelSetup, validateConfig } from './config';
import { Communicator } from './dist';
import { ExpertPrecision, NativeForward, NativeMoELayer, NativeTensor, native } from './native';
import { Tensor } from './tensor';
import { checkKeys, checkObject, describe } from './validate';

export interface ForwardOptions {
  /** R2: i32 [T], the modality of each token. */
  modality?: Tensor;
  /** L3: lengths of the sequences packed in x (Σ = T). */
  seqLens?: number[];
  /** false: evaluation; no L2 window, no R10 load/step update, no backward. Default true. */
  training?: boolean;
  /** The numerics guard for this forward and its backward (see the file comment); default the layer's. */
  checkFinite?: boolean;
}

/** Options of a layer that are not part of its (JSON) config. */
export interface LayerOptions {
  /** Names the layer in NumericsError messages; default 'moe'. */
  name?: string;
  /** The numerics guard on every forward and backward (see the file comment); default false. */
  checkFinite?: boolean;
}

/** Per-expert load of one forward (DESIGN "Monitoring"). Arrays are indexed by expert. */
export interface ExpertStats {
  tokens: number;
  /** R6 selections (before capacity). */
  counts: Int32Array;
  /** Assignments kept after capacity (C2–C5). */
  accepted: Int32Array;
  /** Slots dropped while pointing at the expert. */
  dropped: Int32Array;
  /** f_i = counts_i / (T·k). */
  f: Float64Array;
  /** P_i = mean over tokens of s̃_i. */
  P: Float64Array;
  /** max(c)/mean(c) − 1. */
  maxVio: number;
  /** std(c)/mean(c). */
  cv: number;
  /** −Σ p log p / log E, p = c/Σc. */
  entropy: number;
  /** Forward FLOPs of each routed expert's matmuls. */
  flops: number[];
  /** Forward FLOPs of the shared experts. */
  sharedFlops: number;
}

/** This rank's experts of one group under expert parallelism: global expert indices [start, end). */
export interface ExpertRange {
  group: string;
  start: number;
  end: number;
}

/**
 * What this rank's expert exchange sent since construction, indexed by destination rank (its own
 * entry is 0): messages (each hop's row count to each peer, and each non-empty block of rows) and
 * their bytes (native/layer/row_exchange.h).
 */
export interface ExchangeStats {
  messages: number[];
  bytes: number[];
  hierarchical: boolean;
}

export interface MoEOutput {
  y: Tensor;
  /** Sum of the configured aux losses (coefficients included). */
  aux: number;
  losses: { balance?: number; z?: number; orthogonality?: number };
  routing: {
    /** [T,k] final experts (R6, C5); [T,0] for expert choice. */
    indices: Tensor;
    /** [T,k] R7 weights. */
    weights: Tensor;
    /** [T,k] 1 = kept, 0 = dropped by capacity. */
    keep: Tensor;
    /** The kept assignments the experts computed: token, expert and weight of each. */
    assignments: { token: Tensor; expert: Tensor; weight: Tensor };
  };
  stats: ExpertStats;
  /**
   * The expert path this forward ran (config.precision on this device): bf16 = bf16 operands with
   * f32 accumulation, fp8 = e4m3 block-scaled forward GEMMs (README "The MoE layer"). The router is
   * f32/float64 in every mode.
   */
  precision: ExpertPrecision;
}

interface ExpertTensors {
  w1: Tensor;
  w3?: Tensor;
  w2: Tensor;
}

export class MoELayer {
  readonly config: MoEConfig;
  readonly name: string;
  readonly checkFinite: boolean;
  #spec: FlatSpec | undefined;
  #parallel: ParallelSetup | undefined;
  #native: NativeMoELayer | undefined;
  #params: Record<string, Tensor> = {};
  #state: Record<string, Tensor> = {};
  #grads: Record<string, Tensor> = {};
  #lastTokens = -1;
  #lastChecked = false;

  constructor(config: MoEConfig, options: LayerOptions = {}) {
    const o = checkObject(options, 'options');
    checkKeys(o, 'options', ['name', 'checkFinite']);
    if (o.name !== undefined && (typeof o.name !== 'string' || o.name.length === 0)) throw new ArgumentError(`options.name must be a non-empty string, got ${describe(o.name)}`);
    if (o.checkFinite !== undefined && typeof o.checkFinite !== 'boolean') throw new ArgumentError(`options.checkFinite must be a boolean, got ${describe(o.checkFinite)}`);
    const checked = validateConfig(config);
    this.name = (o.name as string | undefined) ?? 'moe';
    this.checkFinite = (o.checkFinite as boolean | undefined) ?? false;
    this.config = checked.config;
    this.#parallel = checked.parallel;
    if (checked.spec.hidden > 0) this.#build(checked.spec);
  }

  /** The communicators of config.parallel (kept out of `config`, which stays JSON). */
  get parallel(): ParallelSetup | undefined {
    return this.#parallel && { ...this.#parallel };
  }

  /** The routed experts this rank holds: all of them, or its block of each group under expert parallelism. */
  expertRange(): ExpertRange[] {
    const P = this.#parallel?.expert?.size ?? 1;
    const rank = this.#parallel?.expert?.rank ?? 0;
    let first = 0;
    return this.config.experts.map((g) => {
      const start = first + (rank * g.count) / P;
      first += g.count;
      return { group: g.name, start, end: start + g.count / P };
    });
  }

  /** The expert exchange's messages and bytes per destination rank since construction; undefined without parallel.expert. */
  exchangeStats(): ExchangeStats | undefined {
    this.#requireBuilt('exchangeStats()');
    return (this.#native as NativeMoELayer).exchangeStats() ?? undefined;
  }

  /**
   * Sums the gradients over the data-parallel ranks (DESIGN §2), in one allReduce per group
   * (a bucket of every f32 gradient): the replicated parameters' (router, shared experts) over
   * parallel.expert and the data group, the expert blocks' over the data group. The data group is
   * `comm` when given, else config.parallel.data. With neither a data group nor parallel.expert
   * there is nothing to sum over: ArgumentError.
   */
  allReduceGrads(comm?: Communicator): void {
    this.#requireBuilt('allReduceGrads()');
    if (comm !== undefined && !(comm instanceof Communicator)) throw new ArgumentError(`comm must be a Communicator from dist.init(), got ${describe(comm)}`);
    if (comm === undefined && !this.#parallel?.data && !this.#parallel?.expert) {
      throw new ArgumentError('allReduceGrads: pass the data-parallel communicator (the layer has no config.parallel.data or .expert)');
    }
    if (comm !== undefined && comm === this.#parallel?.expert) {
      throw new ArgumentError('allReduceGrads: comm is the layer\'s parallel.expert; pass the data-parallel group (or nothing)');
    }
    (this.#native as NativeMoELayer).allReduceGrads(comm ? comm.handle : null);
  }

  /** Number of routed experts over all groups. */
  get experts(): number {
    return this.config.experts.reduce((sum, g) => sum + g.count, 0);
  }

  /** Forwards since construction (R10's step). */
  get step(): number {
    return this.#native?.step ?? 0;
  }

  /** R10's noise key: config.seed (default 0), or the router.seed of the last state dict loaded. */
  get seed(): number {
    return this.#native?.seed ?? this.config.seed ?? 0;
  }

  forward(x: Tensor, opts: ForwardOptions = {}): MoEOutput {
    if (!Tensor.isTensor(x)) throw new ArgumentError(`x must be a Tensor, got ${describe(x)}`);
    const o = checkObject(opts, 'opts');
    if (x.dtype !== 'f32') throw new DTypeError(`x must be f32, got ${x.dtype}`);
    if (x.shape.length !== 2) throw new ShapeError(`x must have shape [T, hidden], got [${x.shape.join(', ')}]`);
    if (!this.#native) {
      this.config.hidden = x.shape[1];
      this.#build(validateConfig(this.config).spec);
    }
    const spec = this.#spec as FlatSpec;
    if (x.shape[1] !== spec.hidden) throw new ShapeError(`x must have shape [T, ${spec.hidden}], got [${x.shape.join(', ')}]`);
    if (x.device !== spec.device) throw new DeviceError(`x is on ${x.device}, the layer on ${spec.device}: move it with x.to('${spec.device}')`);
    // Each option is read once (an accessor must not see a second read that differs from the checked one).
    const { modality: modalityOpt, seqLens: seqLensOpt, training: trainingOpt, checkFinite: checkFiniteOpt } = o;
    const modality = modalityOpt === undefined ? null : checkModality(modalityOpt, x.shape[0], spec);
    const seqLens = seqLensOpt === undefined ? null : checkSeqLens(seqLensOpt, x.shape[0]);
    if (trainingOpt !== undefined && typeof trainingOpt !== 'boolean') throw new ArgumentError(`opts.training must be a boolean, got ${describe(trainingOpt)}`);
    if (checkFiniteOpt !== undefined && typeof checkFiniteOpt !== 'boolean') throw new ArgumentError(`opts.checkFinite must be a boolean, got ${describe(checkFiniteOpt)}`);
    const check = (checkFiniteOpt as boolean | undefined) ?? this.checkFinite;
    if (check) {
      this.#checkTensor(x, 'input', 'x');
      for (const name of ['router.bias', 'router.load'] as const) this.#checkTensor(this.#state[name], name, name, name);
    }
    const r = (this.#native as NativeMoELayer).forward(x.handle, modality, seqLens, (trainingOpt as boolean | undefined) ?? true, check);
    this.#lastTokens = x.shape[0];
    this.#lastChecked = check;
    if (r.nonFinite) {
      for (const value of Object.values(r)) if (value && typeof value === 'object' && 'dispose' in value) (value as NativeTensor).dispose();
      this.#lastTokens = -1;
      throw this.#forwardNumericsError(r.nonFinite);
    }
    const losses: MoEOutput['losses'] = {};
    if (spec.router.balanceCoeff > 0) losses.balance = r.balance;
    if (spec.router.zCoeff > 0) losses.z = r.z;
    if (spec.router.orthCoeff > 0) losses.orthogonality = r.orthogonality;
    const take = (t: NativeTensor) => {
      const values = t.toArray();
      t.dispose();
      return values;
    };
    return {
      y: Tensor.wrap(r.y),
      aux: r.aux,
      losses,
      routing: {
        indices: Tensor.wrap(r.indices),
        weights: Tensor.wrap(r.weights),
        keep: Tensor.wrap(r.keep),
        assignments: { token: Tensor.wrap(r.assignToken), expert: Tensor.wrap(r.assignExpert), weight: Tensor.wrap(r.assignWeight) },
      },
      stats: {
        tokens: x.shape[0],
        counts: take(r.counts) as Int32Array,
        accepted: take(r.accepted) as Int32Array,
        dropped: take(r.dropped) as Int32Array,
        f: r.f,
        P: r.P,
        maxVio: r.maxVio,
        cv: r.cv,
        entropy: r.entropy,
        flops: r.flops,
        sharedFlops: r.sharedFlops,
      },
      precision: r.precision,
    };
  }

  /** dy [T,H] of the last training forward → dx; adds every parameter gradient into grads(). */
  backward(dy: Tensor): { dx: Tensor } {
    if (!Tensor.isTensor(dy)) throw new ArgumentError(`dy must be a Tensor, got ${describe(dy)}`);
    if (!this.#native || this.#lastTokens < 0) throw new ArgumentError('backward: needs a training forward first');
    if (dy.dtype !== 'f32') throw new DTypeError(`dy must be f32, got ${dy.dtype}`);
    const hidden = (this.#spec as FlatSpec).hidden;
    if (dy.shape.length !== 2 || dy.shape[0] !== this.#lastTokens || dy.shape[1] !== hidden) {
      throw new ShapeError(`dy must have the shape of y, [${this.#lastTokens}, ${hidden}], got [${dy.shape.join(', ')}]`);
    }
    const device = (this.#spec as FlatSpec).device;
    if (dy.device !== device) throw new DeviceError(`dy is on ${dy.device}, the layer on ${device}: move it with dy.to('${device}')`);
    if (this.#lastChecked) this.#checkTensor(dy, 'input', 'dy');
    const dx = Tensor.wrap(this.#native.backward(dy.handle));
    if (this.#lastChecked) {
      try {
        const grads = Object.entries(this.#grads);
        const order = (name: string) => (name.startsWith('experts.') ? 0 : name.startsWith('shared.') ? 1 : 2);
        for (const [name, g] of grads.sort((a, b) => order(a[0]) - order(b[0]))) this.#checkTensor(g, 'grad', `grads()["${name}"]`, name);
        this.#checkTensor(dx, 'dx', 'dx');
      } catch (error) {
        dx.dispose();
        throw error;
      }
    }
    return { dx };
  }

  /** Closes the balance window (L2) and applies the bias update (B1). */
  endStep(): void {
    this.#native?.endStep();
  }

  /** The trainable parameters (live tensors, DESIGN §2 names). */
  parameters(): Record<string, Tensor> {
    this.#requireBuilt('parameters()');
    return { ...this.#params };
  }

  /** Gradient accumulators, one per parameter (live tensors). */
  grads(): Record<string, Tensor> {
    this.#requireBuilt('grads()');
    return { ...this.#grads };
  }

  zeroGrad(): void {
    for (const g of Object.values(this.#grads)) g.handle.zero();
  }

  /**
   * Copies of every parameter and state tensor: router.bias and router.load (f32 [E]),
   * router.step (i32 [1], the training forwards so far: R10's noise counter) and router.seed
   * (i32 [2], R10's noise key: the low and the high 32-bit word of the seed, an integer in
   * [0, 2^53-1], each as the i32 of its bits; seed = (low >>> 0) + high·2^32).
   */
  stateDict(): Record<string, Tensor> {
    this.#requireBuilt('stateDict()');
    const out: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries({ ...this.#params, ...this.#state })) out[name] = t.to('f32');
    out['router.step'] = Tensor.from([this.step], [1], { dtype: 'i32' });
    out['router.seed'] = Tensor.from(Int32Array.of(this.seed % 2 ** 32, Math.floor(this.seed / 2 ** 32)), [2]);
    return out;
  }

  /**
   * Restores parameters and state from a state dict. Only its own names count (an inherited
   * property is absent, and a name such as `constructor` is unknown): every parameter,
   * router.bias, router.load and router.step are required; router.seed is optional (a state dict
   * from before it existed keeps this layer's seed); any other name is an ArgumentError. DESIGN §4:
   * a failed call writes nothing. Every entry is read once and checked (a live Tensor of the
   * target's shape, a float dtype, finite router.bias and router.load, valid router.step and
   * router.seed), then this layer's own tensors are checked alive, and only then is anything
   * written. Under expert parallelism an expert tensor may be the full one (this rank keeps its
   * block) or the rank's block.
   */
  loadStateDict(sd: Record<string, Tensor>): void {
    this.#requireBuilt('loadStateDict()');
    const dict = checkObject(sd, 'stateDict');
    const entries: Record<string, unknown> = Object.create(null);
    for (const name of Object.keys(dict)) entries[name] = dict[name];  // each getter runs once, here
    const targets = { ...this.#params, ...this.#state };
    const counters = ['router.step', 'router.seed'];
    const unknown = Object.keys(entries).filter((k) => !Object.hasOwn(targets, k) && !counters.includes(k));
    if (unknown.length > 0) throw new ArgumentError(`stateDict has names this layer does not: ${unknown.join(', ')}`);
    const missing = [...Object.keys(targets), 'router.step'].filter((k) => !Object.hasOwn(entries, k));
    if (missing.length > 0) throw new ArgumentError(`stateDict lacks ${missing.join(', ')}`);
    const step = checkStepEntry(entries['router.step']);
    const seed = Object.hasOwn(entries, 'router.seed') ? checkSeedEntry(entries['router.seed']) : this.seed;
    const writes = Object.entries(targets).map(([name, target]): [Tensor, Float32Array] => {
      const source = liveEntry(entries[name], name);
      const full = this.#fullShape(name, target);
      const whole = full !== undefined && source.shape.join() === full.join();
      if (source.shape.join() !== target.shape.join() && !whole) {
        const either = full ? ` (this rank's block) or [${full.join(', ')}] (the full tensor)` : '';
        throw new ShapeError(`stateDict["${name}"] must have shape [${target.shape.join(', ')}]${either}, got [${source.shape.join(', ')}]`);
      }
      if (source.dtype === 'i32' || source.dtype === 'u8') throw new DTypeError(`stateDict["${name}"] must be a float tensor, got ${source.dtype}`);
      const values = source.toArray() as Float32Array;
      if (Object.hasOwn(this.#state, name)) {
        const i = values.findIndex((v) => !Number.isFinite(v));
        if (i >= 0) throw new ArgumentError(`stateDict["${name}"][${i}] must be a finite number (DESIGN §4), got ${values[i]}`);
      }
      return [target, whole ? this.#block(values, full[0]) : values];
    });
    this.#requireAlive('loadStateDict()');
    for (const [target, data] of writes) target.handle.write(data);
    const layer = this.#native as NativeMoELayer;
    layer.step = step;
    layer.seed = seed;
  }

  /** Frees every parameter, state and gradient tensor; the layer cannot be used afterwards. */
  dispose(): void {
    for (const t of [...Object.values(this.#params), ...Object.values(this.#state), ...Object.values(this.#grads)]) t.dispose();
  }

  /** The full shape of a routed-expert tensor held as a block under expert parallelism (else undefined). */
  #fullShape(name: string, target: Tensor): number[] | undefined {
    const P = this.#parallel?.expert?.size ?? 1;
    if (P === 1 || !name.startsWith('experts.')) return undefined;
    return [target.shape[0] * P, ...target.shape.slice(1)];
  }

  /** This rank's rows of a full routed-expert tensor of `count` experts (row-major values). */
  #block(values: Float32Array, count: number): Float32Array {
    const P = this.#parallel?.expert?.size ?? 1;
    const rank = this.#parallel?.expert?.rank ?? 0;
    const per = values.length / count;
    const local = count / P;
    return values.subarray(rank * local * per, (rank + 1) * local * per);
  }

  /** The group name and in-group index of a global expert index. */
  #expertOf(global: number): { group: string; index: number } | undefined {
    let start = 0;
    for (const g of this.config.experts) {
      if (global < start + g.count) return { group: g.name, index: global - start };
      start += g.count;
    }
    return undefined;
  }

  #fail(stage: NumericsDetails['stage'], what: string, details: NumericsDetails = {}): NumericsError {
    return new NumericsError(`layer "${this.name}", stage ${stage}: ${what} (checkFinite)`, { layer: this.name, stage, ...details });
  }

  #forwardNumericsError(found: NonNullable<NativeForward['nonFinite']>): NumericsError {
    const expert = found.expert >= 0 && found.stage !== 'shared' ? this.#expertOf(found.expert) : undefined;
    const name = expert ? `expert ${expert.group}[${expert.index}]` : '';
    const token = found.token >= 0 ? { token: found.token } : {};
    switch (found.stage) {
      case 'router.weight':
        return this.#fail('router.weight', `router.weight row ${found.expert} (${name}) holds a NaN or Inf`, { expert });
      case 'router':
        return found.token < 0
          ? this.#fail('router', 'the aux loss is NaN or Inf')
          : this.#fail('router', `the routing weight of token ${found.token} for ${name} is NaN or Inf`, { ...token, expert });
      case 'expert':
        return this.#fail('expert', `y[${found.token}] is NaN or Inf after the routed experts; ` +
          (expert ? `${name} gives NaN or Inf on token ${found.token}` : `no single expert of token ${found.token} does: their weighted sum overflows`), { ...token, expert });
      case 'shared':
        return this.#fail('shared', `y[${found.token}] is NaN or Inf after the shared experts` +
          (found.expert >= 0 ? `; shared expert ${found.expert} gives NaN or Inf on token ${found.token}` : ''),
          { ...token, ...(found.expert >= 0 ? { expert: { group: 'shared', index: found.expert } } : {}) });
    }
  }

  /** Throws NumericsError at the first NaN or Inf of t (a [T,H] activation or a parameter's gradient). */
  #checkTensor(t: Tensor, stage: NumericsDetails['stage'], what: string, parameter?: string): void {
    const values = (t.device === 'cpu' ? t.view() : t.toArray()) as Float32Array;
    let i = 0;
    while (i < values.length && Number.isFinite(values[i])) i++;
    if (i === values.length) return;
    const index: number[] = [];
    for (let rest = i, d = t.shape.length - 1; d >= 0; d--) {
      index.unshift(rest % t.shape[d]);
      rest = Math.floor(rest / t.shape[d]);
    }
    const details: NumericsDetails = {};
    let where = '';
    if (parameter !== undefined) {
      details.parameter = parameter;
      const group = parameter.match(/^experts\.(\w+)\./)?.[1];
      if (group !== undefined) details.expert = { group, index: index[0] };
      else if (parameter.startsWith('shared.')) details.expert = { group: 'shared', index: index[0] };
      else if (parameter.startsWith('router.')) details.expert = this.#expertOf(index[0]);  // weight, bias, load: a row or entry per expert
      if (details.expert) where = ` (expert ${details.expert.group}[${details.expert.index}])`;
    } else {
      details.token = index[0];
    }
    throw this.#fail(stage, `${what}[${index.join(', ')}] is ${values[i]}${where}`, details);
  }

  /** DisposedError when any tensor the native layer holds (parameter, state, gradient) was disposed. */
  #requireAlive(what: string): void {
    const held: [string, Record<string, Tensor>][] = [['parameters()', this.#params], ['state', this.#state], ['grads()', this.#grads]];
    for (const [where, record] of held) {
      for (const [name, t] of Object.entries(record)) {
        if (t.disposed) throw new DisposedError(`${what}: this layer's ${where}["${name}"] has been disposed`);
      }
    }
  }

  #requireBuilt(what: string): void {
    if (!this.#native) throw new ArgumentError(`${what}: config.hidden is unknown until the first forward; set it in the config`);
  }

  /** Allocates the tensors and the native layer; on failure frees what it allocated at once and leaves the layer unbuilt. */
  #build(spec: FlatSpec): void {
    const needed = layerBytes(spec, this.#parallel?.expert?.size ?? 1);
    const available = native.availableMemory();
    if (needed > available) {
      throw new MoEConfigError(`config: the layer's parameters, gradients and state need ${needed} bytes of host memory (${gib(needed)} GiB), ` +
        `${available} bytes (${gib(available)} GiB) are available; nothing was allocated`);
    }
    const made: Tensor[] = [];
    try {
      this.#allocate(spec, made);
    } catch (error) {
      for (const t of made) t.dispose();
      this.#params = {};
      this.#state = {};
      this.#grads = {};
      this.#spec = undefined;
      this.#native = undefined;
      throw error;
    }
  }

  /** Every tensor it allocates goes into `made` first. */
  #allocate(spec: FlatSpec, made: Tensor[]): void {
    this.#spec = spec;
    const H = spec.hidden;
    const E = spec.groups.reduce((sum, g) => sum + g.count, 0);
    const swiglu = spec.activation === 0;
    let stream = 0;
    const seed = spec.router.seed;
    const device = spec.device as DeviceSpec;
    const keep = (t: Tensor) => {
      made.push(t);
      return t;
    };
    const zeros = (shape: number[]) => keep(Tensor.zeros(shape, { device }));
    const randn = (shape: number[], fanIn: number) => keep(Tensor.randn(shape, { seed: initKey(seed, stream++), std: 1 / Math.sqrt(fanIn), device }));
    // Routed experts under expert parallelism: drawn whole (the same stream on every layout), this rank's block kept.
    const routed = (shape: number[], fanIn: number) => {
      const full = randn(shape, fanIn);
      if ((this.#parallel?.expert?.size ?? 1) === 1) return full;
      const rows = this.#block(full.toArray() as Float32Array, shape[0]);
      full.dispose();
      return keep(Tensor.from(rows, [rows.length / (shape[1] * shape[2]), shape[1], shape[2]], { device }));
    };
    const expertTensors = (count: number, ffn: number, draw = randn): ExpertTensors => ({
      w1: draw([count, ffn, H], H),
      ...(swiglu ? { w3: draw([count, ffn, H], H) } : {}),
      w2: draw([count, H, ffn], ffn),
    });
    const zerosLike = (t: ExpertTensors): ExpertTensors => ({
      w1: zeros([...t.w1.shape]),
      ...(t.w3 ? { w3: zeros([...t.w3.shape]) } : {}),
      w2: zeros([...t.w2.shape]),
    });
    const routerWeight = randn([E, H], H);
    const groups = spec.groups.map((g) => expertTensors(g.count, g.ffn, routed));
    const shared = spec.sharedCount > 0 ? expertTensors(spec.sharedCount, spec.sharedFfn) : undefined;
    const gradGroups = groups.map(zerosLike);
    const gradShared = shared ? zerosLike(shared) : undefined;
    const routerBias = zeros([E]);
    const routerLoad = keep(Tensor.from(new Float32Array(E).fill(1 / E), [E], { device }));
    const gradRouter = zeros([E, H]);

    this.#params['router.weight'] = routerWeight;
    this.#grads['router.weight'] = gradRouter;
    this.config.experts.forEach((g, i) => addExpertTensors(`experts.${g.name}`, groups[i], gradGroups[i], this.#params, this.#grads));
    if (shared && gradShared) addExpertTensors('shared', shared, gradShared, this.#params, this.#grads);
    this.#state['router.bias'] = routerBias;
    this.#state['router.load'] = routerLoad;

    const handles = (t: ExpertTensors) => ({ w1: t.w1.handle, w3: t.w3?.handle, w2: t.w2.handle });
    const parallel = this.#parallel && {
      ...(this.#parallel.expert ? { expert: this.#parallel.expert.handle } : {}),
      ...(this.#parallel.data ? { data: this.#parallel.data.handle } : {}),
      ranksPerNode: this.#parallel.ranksPerNode,
    };
    this.#native = new native.NativeMoELayer(
      spec,
      { routerWeight: routerWeight.handle, routerBias: routerBias.handle, routerLoad: routerLoad.handle, groups: groups.map(handles), shared: shared && handles(shared) },
      { routerWeight: gradRouter.handle, groups: gradGroups.map(handles), shared: gradShared && handles(gradShared) },
      parallel,
    );
  }
}

/**
 * The Philox key of the `stream`-th initial tensor: (1000·seed + stream) mod 2^53, so every seed up
 * to 2^53−1 is accepted (1000·seed alone leaves the safe integers above seed ≈ 9·10^12) and smaller
 * seeds keep the keys they always had.
 */
function initKey(seed: number, stream: number): number {
  return Number((BigInt(seed) * 1000n + BigInt(stream)) % 2n ** 53n);
}

/** Bytes #allocate takes: f32 parameters and their gradients, router.bias and router.load. */
function layerBytes(spec: FlatSpec, expertRanks: number): number {
  const H = spec.hidden;
  const perExpert = (ffn: number) => (spec.activation === 0 ? 3 : 2) * ffn * H;
  const E = spec.groups.reduce((sum, g) => sum + g.count, 0);
  const routed = spec.groups.reduce((sum, g) => sum + (g.count / expertRanks) * perExpert(g.ffn), 0);
  const shared = spec.sharedCount * perExpert(spec.sharedFfn);
  return 4 * (2 * (E * H + routed + shared) + 2 * E);
}

const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(2);

function addExpertTensors(prefix: string, params: ExpertTensors, grads: ExpertTensors, paramOut: Record<string, Tensor>, gradOut: Record<string, Tensor>): void {
  for (const key of ['w1', 'w3', 'w2'] as const) {
    const p = params[key];
    const g = grads[key];
    if (p && g) {
      paramOut[`${prefix}.${key}`] = p;
      gradOut[`${prefix}.${key}`] = g;
    }
  }
}

function checkModality(modality: unknown, T: number, spec: FlatSpec): NativeTensor {
  if (!Tensor.isTensor(modality)) throw new ArgumentError(`opts.modality must be an i32 Tensor [${T}], got ${describe(modality)}`);
  if (modality.dtype !== 'i32') throw new DTypeError(`opts.modality must be i32, got ${modality.dtype}`);
  if (modality.device !== spec.device) throw new DeviceError(`opts.modality is on ${modality.device}, the layer on ${spec.device}`);
  if (modality.shape.length !== 1 || modality.shape[0] !== T) throw new ShapeError(`opts.modality must have shape [${T}], got [${modality.shape.join(', ')}]`);
  const known = new Set(spec.groups.map((g) => g.modality).filter((m) => m >= 0));
  const values = modality.toArray();
  for (let t = 0; t < values.length; t++) {
    if (known.size > 0 && !known.has(values[t]) && !spec.groups.some((g) => g.modality < 0)) {
      throw new ArgumentError(`opts.modality[${t}] = ${values[t]} matches no expert group (modalities: ${[...known].join(', ')})`);
    }
  }
  return modality.handle;
}

/** A state dict entry that must be a Tensor that was not disposed. */
function liveEntry(value: unknown, name: string): Tensor {
  if (!Tensor.isTensor(value)) throw new ArgumentError(`stateDict["${name}"] must be a Tensor, got ${describe(value)}`);
  if (value.disposed) throw new DisposedError(`stateDict["${name}"] has been disposed`);
  return value;
}

/** router.step of a state dict: an i32 [1] tensor holding a non-negative count. */
function checkStepEntry(value: unknown): number {
  const t = liveEntry(value, 'router.step');
  if (t.dtype !== 'i32' || t.shape.join() !== '1') {
    throw new DTypeError(`stateDict["router.step"] must be an i32 tensor of shape [1], got ${t.dtype} [${t.shape.join(', ')}]`);
  }
  const step = t.toArray()[0];
  if (step < 0) throw new ArgumentError(`stateDict["router.step"] must be >= 0, got ${step}`);
  return step;
}

/**
 * router.seed of a state dict: an i32 [2] tensor, [low, high] 32-bit words of an integer in
 * [0, 2^53-1] (stateDict()), so the high word is in [0, 2^21).
 */
function checkSeedEntry(value: unknown): number {
  const t = liveEntry(value, 'router.seed');
  if (t.dtype !== 'i32' || t.shape.join() !== '2') {
    throw new DTypeError(`stateDict["router.seed"] must be an i32 tensor of shape [2] (low and high 32-bit words), got ${t.dtype} [${t.shape.join(', ')}]`);
  }
  const [low, high] = t.toArray();
  if (high < 0 || high >= 2 ** 21) {
    throw new ArgumentError(`stateDict["router.seed"] must hold a seed in [0, 2^53-1]: its high word must be in [0, 2^21), got ${high}`);
  }
  return (low >>> 0) + high * 2 ** 32;
}

/** A plain copy of seqLens, each entry read once (accessors and proxies run once; native code reads the copy). */
function checkSeqLens(seqLens: unknown, T: number): number[] {
  if (!Array.isArray(seqLens)) throw new ArgumentError(`opts.seqLens must be an array of positive integers, got ${describe(seqLens)}`);
  const lens: number[] = [];
  const length = seqLens.length;
  for (let i = 0; i < length; i++) {
    const n: unknown = seqLens[i];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new ArgumentError(`opts.seqLens[${i}] must be a positive integer, got ${describe(n)}`);
    lens.push(n);
  }
  const total = lens.reduce((a, b) => a + b, 0);
  if (total !== T) throw new ShapeError(`opts.seqLens must sum to the ${T} tokens of x, got ${total}`);
  return lens;
}
