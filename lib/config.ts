/**
 * MoEConfig (DESIGN §2): its types, its validation (MoEConfigError naming the field, unknown
 * fields rejected so typos surface) and the flat spec the addon reads (native/addon/router_spec.h).
 * `parallel` holds communicators, not JSON: it is validated here but kept out of the config copy.
 */
import { DeviceSpec, deviceName } from './devices';
import { Communicator } from './dist';
import { MoEConfigError } from './errors';
import { describe } from './validate';

export interface ExpertGroupConfig {
  name: string;
  count: number;
  ffnHidden: number;
  /** R2: tokens of this modality only; absent = every token. */
  modality?: number;
}

export interface RouterConfig {
  type?: 'topk' | 'affinity' | 'expert-choice' | 'sampled';
  topK: number;
  score?: 'softmax' | 'sigmoid';
  normalize?: boolean;
  scale?: number;
  groupLimited?: { groups: number; topGroups: number };
  bias?: boolean;
  biasUpdateRate?: number;
  temperature?: number;
  minAffinity?: number;
  loadPenalty?: number;
  loadDecay?: number;
}

/**
 * Multi-process layouts (DESIGN §2; README "Multi-process"). Every rank constructs the layer with
 * the same config, and calls forward / backward / endStep / allReduceGrads together.
 */
export interface ParallelConfig {
  /**
   * Expert parallelism: the routed experts are sharded over this group's P ranks, rank r keeping
   * experts [r·Eg/P, (r+1)·Eg/P) of every group (layer.expertRange()); tokens travel to their
   * experts' ranks and back (all-to-all). Its ranks hold different tokens.
   */
  expert?: Communicator;
  /** Data parallelism: ranks that hold different tokens and the same parameters (with `expert`: the same expert block). */
  data?: Communicator;
  /**
   * Hierarchical token exchange over `expert`: nodes of this many consecutive ranks; tokens move
   * inside their node first, then across nodes between ranks of the same local index. With
   * router.groupLimited, its groups must be the nodes (node-limited routing, R5).
   */
  ranksPerNode?: number;
}

/** The checked `parallel` of a config. */
export interface ParallelSetup {
  expert?: Communicator;
  data?: Communicator;
  /** 0 = flat exchange. */
  ranksPerNode: number;
}

export interface MoEConfig {
  hidden?: number;
  experts: ExpertGroupConfig[];
  sharedExperts?: { count: number; ffnHidden: number };
  activation: 'swiglu' | 'gelu' | 'relu';
  router: RouterConfig;
  capacity?: { factor: number; policy?: 'position' | 'score' | 'reroute' };
  losses?: {
    /**
     * microFraction (scope 'global' only, in [0, 1], default 0): adds the micro-batch balance
     * loss (L1 over this rank's micro-batch) at coeff·microFraction — Qwen's "Demons in the Detail"
     * keeps a small local term (1%) beside the global one.
     */
    balance?: { coeff: number; scope?: 'micro' | 'sequence' | 'global'; microFraction?: number };
    z?: { coeff: number };
    orthogonality?: { coeff: number; mode?: 'all' | 'perGroup' | 'crossGroup' };
  };
  precision?: { compute: 'f32' | 'bf16'; experts?: 'same' | 'fp8' };
  device?: DeviceSpec;
  seed?: number;
  parallel?: ParallelConfig;
}

/** The flat spec of native/addon/router_spec.h plus the expert fields the layer reads. */
export interface FlatSpec {
  hidden: number;
  /** 'cpu' or 'cuda:N' (deviceName): the backend the native layer runs on. */
  device: string;
  groups: { count: number; modality: number; ffn: number }[];
  sharedCount: number;
  sharedFfn: number;
  activation: number;
  /** Expert GEMM numerics: compute 0 f32 | 1 bf16, experts 0 same | 1 fp8 (native stage_types.h Precision). */
  precision: { compute: number; experts: number };
  router: {
    type: number; topK: number; score: number; normalize: boolean; scale: number;
    limitGroups: number; limitTopGroups: number; useBias: boolean; biasUpdateRate: number;
    temperature: number; minAffinity: number | null; loadPenalty: number; loadDecay: number;
    capacityFactor: number; policy: number; balanceCoeff: number; scope: number;
    balanceMicroFraction: number; zCoeff: number; orthCoeff: number; orthMode: number; seed: number;
  };
}

const ROUTER_TYPES = ['topk', 'affinity', 'expert-choice', 'sampled'] as const;
const SCORES = ['softmax', 'sigmoid'] as const;
const ACTIVATIONS = ['swiglu', 'gelu', 'relu'] as const;
const POLICIES = ['position', 'score', 'reroute'] as const;
const SCOPES = ['micro', 'sequence', 'global'] as const;
const ORTH_MODES = ['all', 'perGroup', 'crossGroup'] as const;

function fail(path: string, expected: string, got: unknown): never {
  throw new MoEConfigError(`config.${path} must be ${expected}, got ${describe(got)}`);
}

function object(value: unknown, path: string, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'an object', value);
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) {
      const near = keys.find((k) => k.toLowerCase() === key.toLowerCase());
      throw new MoEConfigError(`config.${path}.${key} is not a MoEConfig field${near ? ` (did you mean ${near}?)` : ''}; fields: ${keys.join(', ')}`);
    }
  }
  return value as Record<string, unknown>;
}

function integer(value: unknown, path: string, lo: number, hi = 2 ** 30): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < lo || value > hi) fail(path, `an integer in [${lo}, ${hi}]`, value);
  return value;
}

function number(value: unknown, path: string, lo: number, hi: number, loOpen = false): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < lo || value > hi || (loOpen && value === lo)) {
    fail(path, `a number in ${loOpen ? '(' : '['}${lo}, ${hi}]`, value);
  }
  return value;
}

function oneOf<T extends string>(value: unknown, path: string, options: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !(options as readonly string[]).includes(value)) fail(path, `one of ${options.map((o) => `'${o}'`).join(', ')}`, value);
  return value as T;
}

function boolean(value: unknown, path: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') fail(path, 'a boolean', value);
  return value;
}

function communicator(value: unknown, path: string): Communicator | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof Communicator)) fail(path, 'a Communicator from dist.init()', value);
  if (value.closed) throw new MoEConfigError(`config.${path} is a closed communicator`);
  return value;
}

/** `parallel` against the expert groups and the group-limited routing (R5) it must agree with. */
function validateParallel(value: unknown, groups: { count: number }[], limitGroups: number): ParallelSetup {
  const p = object(value, 'parallel', ['expert', 'data', 'ranksPerNode']);
  const expert = communicator(p.expert, 'parallel.expert');
  const data = communicator(p.data, 'parallel.data');
  if (expert && expert === data) {
    throw new MoEConfigError('config.parallel.data must be a group orthogonal to config.parallel.expert, got the same communicator (with experts sharded over every rank, pass parallel.expert alone)');
  }
  let ranksPerNode = 0;
  if (expert) {
    const P = expert.size;
    groups.forEach((g, i) => {
      if (g.count % P !== 0) fail(`experts[${i}].count`, `a multiple of the expert-parallel size ${P} (config.parallel.expert.size)`, g.count);
    });
    if (p.ranksPerNode !== undefined) {
      ranksPerNode = integer(p.ranksPerNode, 'parallel.ranksPerNode', 1, P);
      if (P % ranksPerNode !== 0) fail('parallel.ranksPerNode', `a divisor of the expert-parallel size ${P}`, p.ranksPerNode);
      const nodes = P / ranksPerNode;
      if (limitGroups > 0 && nodes > 1 && ranksPerNode > 1 && (groups.length !== 1 || limitGroups !== nodes)) {
        throw new MoEConfigError(
          `config.router.groupLimited.groups must be the ${nodes} nodes of the hierarchical exchange (parallel.ranksPerNode ${ranksPerNode} of ${P} ranks) ` +
            `over a single expert group, so that node-limited routing (R5) bounds the nodes a token reaches; got ${limitGroups} groups over ${groups.length} expert group(s)`,
        );
      }
    }
  } else if (p.ranksPerNode !== undefined) {
    throw new MoEConfigError('config.parallel.ranksPerNode needs config.parallel.expert (it shapes the expert all-to-all)');
  }
  return { expert, data, ranksPerNode };
}

/**
 * Checks a MoEConfig and returns a copy (without `parallel`) together with the flat spec and the
 * checked `parallel`. `hidden` may come from the first input when the config leaves it out; while
 * it is unknown, spec.hidden is 0.
 */
export function validateConfig(input: unknown, hiddenFromInput?: number): { config: MoEConfig; spec: FlatSpec; parallel?: ParallelSetup } {
  const c = object(input, 'root', ['hidden', 'experts', 'sharedExperts', 'activation', 'router', 'capacity', 'losses', 'precision', 'device', 'seed', 'parallel']);
  const hidden = c.hidden === undefined ? hiddenFromInput ?? 0 : integer(c.hidden, 'hidden', 1);

  if (!Array.isArray(c.experts) || c.experts.length === 0) fail('experts', 'a non-empty array of expert groups', c.experts);
  const names = new Set<string>();
  const groups = Array.from(c.experts as unknown[], (g, i) => {  // Array.from visits holes too
    const group = object(g, `experts[${i}]`, ['name', 'count', 'ffnHidden', 'modality']);
    if (typeof group.name !== 'string' || !/^[A-Za-z0-9_]+$/.test(group.name)) fail(`experts[${i}].name`, 'a name of letters, digits and _', group.name);
    if (names.has(group.name)) throw new MoEConfigError(`config.experts[${i}].name "${group.name}" is used by another group`);
    names.add(group.name);
    return {
      name: group.name,
      count: integer(group.count, `experts[${i}].count`, 1),
      ffnHidden: integer(group.ffnHidden, `experts[${i}].ffnHidden`, 1),
      modality: group.modality === undefined ? undefined : integer(group.modality, `experts[${i}].modality`, 0),
    };
  });
  const E = groups.reduce((sum, g) => sum + g.count, 0);
  const activation = oneOf(c.activation, 'activation', ACTIVATIONS, 'swiglu');
  if (c.activation === undefined) fail('activation', `one of ${ACTIVATIONS.join(', ')}`, c.activation);

  let shared: MoEConfig['sharedExperts'];
  if (c.sharedExperts !== undefined) {
    const s = object(c.sharedExperts, 'sharedExperts', ['count', 'ffnHidden']);
    shared = { count: integer(s.count, 'sharedExperts.count', 1, 1024), ffnHidden: integer(s.ffnHidden, 'sharedExperts.ffnHidden', 1) };
  }

  const r = object(c.router, 'router', ['type', 'topK', 'score', 'normalize', 'scale', 'groupLimited', 'bias', 'biasUpdateRate', 'temperature', 'minAffinity', 'loadPenalty', 'loadDecay']);
  const type = oneOf(r.type, 'router.type', ROUTER_TYPES, 'topk');
  const topK = integer(r.topK, 'router.topK', 1, E);
  const score = oneOf(r.score, 'router.score', SCORES, 'softmax');
  if (type === 'affinity' && score !== 'softmax') fail('router.score', "'softmax' for affinity routing (R8)", r.score);
  let limitGroups = 0;
  let limitTopGroups = 0;
  if (r.groupLimited !== undefined) {
    const gl = object(r.groupLimited, 'router.groupLimited', ['groups', 'topGroups']);
    limitGroups = integer(gl.groups, 'router.groupLimited.groups', 1, E);
    if (E % limitGroups !== 0) fail('router.groupLimited.groups', `a divisor of the ${E} experts`, gl.groups);
    limitTopGroups = integer(gl.topGroups, 'router.groupLimited.topGroups', 1, limitGroups);
    if (topK > limitTopGroups * (E / limitGroups)) fail('router.topK', `at most topGroups·(E/groups) = ${limitTopGroups * (E / limitGroups)} with group-limited routing (R5)`, topK);
  }
  const useBias = boolean(r.bias, 'router.bias', false);

  let capacityFactor = 0;
  let policy: (typeof POLICIES)[number] = 'position';
  if (c.capacity !== undefined) {
    const cap = object(c.capacity, 'capacity', ['factor', 'policy']);
    capacityFactor = number(cap.factor, 'capacity.factor', 0, 1e6, true);
    policy = oneOf(cap.policy, 'capacity.policy', POLICIES, 'position');
  }

  const l = c.losses === undefined ? {} : object(c.losses, 'losses', ['balance', 'z', 'orthogonality']);
  let balanceCoeff = 0;
  let scope: (typeof SCOPES)[number] = 'micro';
  let balanceMicroFraction = 0;
  if (l.balance !== undefined) {
    const b = object(l.balance, 'losses.balance', ['coeff', 'scope', 'microFraction']);
    balanceCoeff = number(b.coeff, 'losses.balance.coeff', 0, 1e6);
    scope = oneOf(b.scope, 'losses.balance.scope', SCOPES, 'micro');
    if (b.microFraction !== undefined) {
      balanceMicroFraction = number(b.microFraction, 'losses.balance.microFraction', 0, 1);
      if (balanceMicroFraction > 0 && scope !== 'global') fail('losses.balance.microFraction', `0 with scope '${scope}' (it mixes a micro-batch term into the 'global' scope)`, b.microFraction);
    }
    if (type === 'expert-choice') throw new MoEConfigError('config.losses.balance: expert-choice routing is balanced by construction and has no balance loss (R9)');
  }
  let zCoeff = 0;
  if (l.z !== undefined) zCoeff = number(object(l.z, 'losses.z', ['coeff']).coeff, 'losses.z.coeff', 0, 1e6);
  let orthCoeff = 0;
  let orthMode: (typeof ORTH_MODES)[number] = 'all';
  if (l.orthogonality !== undefined) {
    const o = object(l.orthogonality, 'losses.orthogonality', ['coeff', 'mode']);
    orthCoeff = number(o.coeff, 'losses.orthogonality.coeff', 0, 1e6);
    orthMode = oneOf(o.mode, 'losses.orthogonality.mode', ORTH_MODES, 'all');
    if (orthMode === 'crossGroup' && groups.length < 2) fail('losses.orthogonality.mode', "'all' or 'perGroup' with a single expert group ('crossGroup' needs two)", o.mode);
  }

  const precision = { compute: 0, experts: 0 };
  if (c.precision !== undefined) {
    const p = object(c.precision, 'precision', ['compute', 'experts']);
    const compute = oneOf(p.compute, 'precision.compute', ['f32', 'bf16'] as const, 'f32');
    const experts = oneOf(p.experts, 'precision.experts', ['same', 'fp8'] as const, 'same');
    if (experts === 'fp8' && compute !== 'bf16') fail('precision.compute', "'bf16' with fp8 experts (their backward runs in bf16)", p.compute);
    precision.compute = compute === 'bf16' ? 1 : 0;
    precision.experts = experts === 'fp8' ? 1 : 0;
  }
  const device = c.device === undefined ? 'cpu' : deviceName(c.device, 'config.device');
  const seed = c.seed === undefined ? 0 : integer(c.seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
  const parallel = c.parallel === undefined ? undefined : validateParallel(c.parallel, groups, limitGroups);

  const spec: FlatSpec = {
    hidden,
    device,
    groups: groups.map((g) => ({ count: g.count, modality: g.modality ?? -1, ffn: g.ffnHidden })),
    sharedCount: shared?.count ?? 0,
    sharedFfn: shared?.ffnHidden ?? 0,
    activation: ACTIVATIONS.indexOf(activation),
    precision,
    router: {
      type: ROUTER_TYPES.indexOf(type),
      topK,
      score: SCORES.indexOf(score),
      normalize: boolean(r.normalize, 'router.normalize', false),
      scale: r.scale === undefined ? 1 : number(r.scale, 'router.scale', 0, 1e6, true),
      limitGroups,
      limitTopGroups,
      useBias,
      biasUpdateRate: r.biasUpdateRate === undefined ? 0.001 : number(r.biasUpdateRate, 'router.biasUpdateRate', 0, 1e3),
      temperature: r.temperature === undefined ? 1 : number(r.temperature, 'router.temperature', 0, 1e6, true),
      minAffinity: r.minAffinity === undefined ? null : number(r.minAffinity, 'router.minAffinity', -1, 1),
      loadPenalty: r.loadPenalty === undefined ? 1 : number(r.loadPenalty, 'router.loadPenalty', 0, 1e6),
      loadDecay: r.loadDecay === undefined ? 0.1 : number(r.loadDecay, 'router.loadDecay', 0, 1, true),
      capacityFactor,
      policy: POLICIES.indexOf(policy),
      balanceCoeff,
      scope: SCOPES.indexOf(scope),
      balanceMicroFraction,
      zCoeff,
      orthCoeff,
      orthMode: ORTH_MODES.indexOf(orthMode),
      seed,
    },
  };
  // The copy is taken once every field has been checked (a field checked later could still hold a
  // value JSON cannot carry, such as a bigint).
  const { parallel: _communicators, ...json } = c;
  const config = JSON.parse(JSON.stringify({ ...json, hidden })) as MoEConfig;
  return { config, spec, ...(parallel ? { parallel } : {}) };
}
