/**
 * API fuzzer, run in a child process by test/fuzz-api.test.ts (so a crash is seen as a signal, not
 * as a dead jest worker). Every exported function and method, and every function of the raw addon,
 * is called with arguments drawn by fast-check from a fixed seed: mostly well-formed arguments with
 * one or two replaced by adversarial ones (wrong types, shapes and dtypes, negative, huge and NaN
 * sizes, disposed tensors, a tensor claiming another device, fakes of Tensor, configs with missing,
 * extra or contradictory fields, truncated and tampered files).
 *
 * A call passes when it returns or throws a MoekitError subclass; anything else is an offender.
 * Before each call its description is appended to MOEKIT_FUZZ_TRACE (when set), so the parent can
 * name the call that killed the process. The last stdout line is the JSON report.
 *
 * Hostile values besides: arrays with accessors and Proxies whose reads dispose a world tensor
 * or the layer mid-call (DESIGN §4), names such as `__proto__`, `constructor`, '' and a 10 kB
 * one, and typed arrays over a SharedArrayBuffer.
 *
 * Semantic targets (name ending in "(semantic)") assert more than "no crash": a failed
 * loadStateDict leaves every parameter bit-identical; a non-finite token throws ArgumentError for
 * every router type; with the emulated-CUDA build loaded, the cpu and the cuda device agree on
 * every input both accept (same error class, or y within 1e-5 and the same assignments). A
 * violated assertion is an offender like an untyped error.
 *
 * Environment: MOEKIT_FUZZ_SEED (default 20261124), MOEKIT_FUZZ_CALLS (default 12000),
 * MOEKIT_FUZZ_TARGETS (a regular expression: only the targets whose name matches),
 * MOEKIT_FUZZ_WORKERS=N (worker mode: N worker threads fuzz at once with seeds SEED+1…SEED+N; the
 * main thread terminates MOEKIT_FUZZ_TERMINATE of them 20–400 ms after they start their calls
 * and, with MOEKIT_FUZZ_EXIT=1, calls process.exit(0) 20–400 ms after all have started theirs,
 * while they still run; otherwise it waits for them and prints their reports merged).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import {
  AdamW,
  ExpertMonitor,
  MoELayer,
  MoEConfig,
  MoekitError,
  ArgumentError,
  Tensor,
  buildInfo,
  cuda,
  devices,
  dist,
  availableMemory,
  liveBytes,
  loadImbalance,
  loadSafetensors,
  losses,
  mergeExpertStats,
  ops,
  parseSafetensors,
  saveSafetensors,
  serializeSafetensors,
  stepRates,
} from '../../lib';
import { Worker, isMainThread, parentPort, workerData } from 'worker_threads';
import { validateConfig } from '../../lib/config';
import { errorClasses } from '../../lib/errors';
import { NativeTensor, native } from '../../lib/native';

const SEED = isMainThread ? Number(process.env.MOEKIT_FUZZ_SEED ?? 20261124) : (workerData as { seed: number }).seed;
const CALLS = Number(process.env.MOEKIT_FUZZ_CALLS ?? 12000);
const WORKERS = isMainThread ? Number(process.env.MOEKIT_FUZZ_WORKERS ?? 0) : 0;
const traceFd = isMainThread && process.env.MOEKIT_FUZZ_TRACE ? fs.openSync(process.env.MOEKIT_FUZZ_TRACE, 'w') : -1;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-fuzz-'));
// A string argument taken as a relative path writes here, not into the project (workers share the
// process's directory, which the main thread set before it started them).
if (isMainThread) process.chdir(tmp);
const EMULATED = process.env.MOEKIT_EMULATE_CUDA === '1';

/** Valid configs the config recipes start from: every router type, capacity policy and loss. */
const BASE_CONFIGS: MoEConfig[] = [
  { hidden: 4, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], sharedExperts: { count: 1, ffnHidden: 2 }, activation: 'swiglu', router: { topK: 2, bias: true },
    losses: { balance: { coeff: 0.01 }, z: { coeff: 0.001 }, orthogonality: { coeff: 0.01 } }, seed: 1 },
  { hidden: 4, experts: [{ name: 'a', count: 2, ffnHidden: 3, modality: 0 }, { name: 'b', count: 2, ffnHidden: 2, modality: 1 }], activation: 'gelu',
    router: { topK: 1, score: 'sigmoid', normalize: true }, capacity: { factor: 1, policy: 'score' }, losses: { balance: { coeff: 0.01, scope: 'global' }, orthogonality: { coeff: 0.1, mode: 'crossGroup' } } },
  { hidden: 4, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], activation: 'relu', router: { type: 'expert-choice', topK: 1 }, capacity: { factor: 1.5 } },
  { hidden: 4, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], activation: 'swiglu', router: { type: 'sampled', topK: 2, loadPenalty: 1, loadDecay: 0.2 }, capacity: { factor: 1, policy: 'reroute' }, seed: 3 },
  { hidden: 4, experts: [{ name: 'e', count: 4, ffnHidden: 3 }], activation: 'swiglu', router: { type: 'affinity', topK: 2, temperature: 0.5, minAffinity: 0.1, groupLimited: { groups: 2, topGroups: 1 } },
    losses: { balance: { coeff: 0.01, scope: 'sequence' }, z: { coeff: 0.01 } } },
];

// ---- recipes: what fast-check draws; materialised against the world at call time ------------------

/** A drawn argument: plain data, so it can be printed in the trace and in the offender list. */
type Recipe =
  | { k: 'v'; v: unknown } // a JSON-able primitive or array
  | { k: 'special'; v: 'undefined' | 'NaN' | 'Infinity' | '-Infinity' | '-0' | 'symbol' | 'bigint' | 'function' | 'date' | 'map' }
  | { k: 'tensor'; i: number } // world.tensors[i]
  | { k: 'handle'; i: number } // world.tensors[i].handle (raw), or a fake
  | { k: 'fake'; i: number } // a Tensor look-alike
  | { k: 'typed'; kind: string; len: number }
  | { k: 'config'; base: number; mutations: Mutation[] }
  | { k: 'spec'; base: number; mutations: Mutation[] }
  | { k: 'obj'; entries: [string, Recipe][] }
  | { k: 'arr'; items: Recipe[] }
  | { k: 'world'; what: 'comm' | 'layer' | 'layer2' | 'monitor' | 'registry' | 'stats' | 'stateDict' | 'optimizerState' | 'optimizer' | 'trainable' | 'badTrainable' }
  | { k: 'path'; which: number }
  | { k: 'bytes'; cut: number; flip: number; header: number }
  // `inner` made, then trapped: an array gets an accessor at entry `at`, an object a Proxy; the
  // `on`-th read disposes world.tensors[victim] (victim −1: the world's layer).
  | { k: 'trap'; inner: Recipe; at: number; on: number; victim: number };

type Mutation = { op: 'delete' | 'set' | 'extra'; path: number; value: Recipe };

const ADVERSARIAL_NUMBERS = [-1, -0.5, 0.5, 1.5, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 31), 1e300, Number.MAX_VALUE, Number.MIN_VALUE];
const LONG_NAME = 'n'.repeat(10240);
const HOSTILE_NAMES = ['__proto__', 'constructor', 'hasOwnProperty', 'toString', '', LONG_NAME];
const STATE_DICT_FAULTS = ['hostile-name', 'inherited-entry', 'disposed-entry', 'wrong-shape', 'nan-bias', 'inf-load', 'disposed-parameter', 'none'] as const;
const STRINGS = ['f32', 'bf16', 'f16', 'i32', 'u8', 'e4m3', 'e5m2', 'cpu', 'cuda', 'cuda:0', 'cuda:7', '', 'bogus', 'all', 'perGroup', 'crossGroup', 'x', '__proto__', 'constructor'];

const special = fc.constantFrom('undefined', 'NaN', 'Infinity', '-Infinity', '-0', 'symbol', 'bigint', 'function', 'date', 'map').map((v) => ({ k: 'special', v }) as Recipe);
const num = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -2, max: 8 }) },
  { weight: 1, arbitrary: fc.constantFrom(...ADVERSARIAL_NUMBERS) },
  { weight: 1, arbitrary: fc.constantFrom(NaN, Infinity, -Infinity) },
);
const numRecipe = num.map((v) => (Number.isFinite(v) ? ({ k: 'v', v }) as Recipe : ({ k: 'special', v: String(v) }) as Recipe));
const shapeRecipe = fc
  .array(fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 6 }) }, { weight: 1, arbitrary: fc.constantFrom(-1, 1.5, 2 ** 31, 2 ** 53, 1e300) }), { maxLength: 9 })
  .map((v) => ({ k: 'v', v }) as Recipe);
const prim = fc.oneof(
  special,
  numRecipe,
  fc.boolean().map((v) => ({ k: 'v', v }) as Recipe),
  fc.constant({ k: 'v', v: null } as Recipe),
  fc.constantFrom(...STRINGS).map((v) => ({ k: 'v', v }) as Recipe),
);

/** Keys worth putting in objects: option and config names, so shallow objects hit real branches. */
const KEYS = ['seed', 'std', 'dtype', 'device', 'coeff', 'topK', 'tokens', 'mode', 'groupSizes', 'modality', 'seqLens', 'training', 'checkFinite',
  'bias', 'load', 'experts', 'capacity', 'lr', 'betas', 'eps', 'weightDecay', 'ewmaAlpha', 'historyLength', 'deadWindow', 'name', 'count', 'ffnHidden',
  'prefix', 'title', 'layers', 'last', 'counts', 'accepted', 'dropped', 'f', 'P', 'shape', 'step', 'w1', 'w2', 'w3', 'routerWeight', 'groups', 'factor', 'policy',
  ...HOSTILE_NAMES];

const TENSOR_COUNT = 32;
const tensorRecipe = fc.integer({ min: 0, max: TENSOR_COUNT - 1 }).map((i) => ({ k: 'tensor', i }) as Recipe);
const handleRecipe = fc.integer({ min: 0, max: TENSOR_COUNT - 1 }).map((i) => ({ k: 'handle', i }) as Recipe);
const fakeRecipe = fc.integer({ min: 0, max: 3 }).map((i) => ({ k: 'fake', i }) as Recipe);
const typedRecipe = fc
  .record({ kind: fc.constantFrom('Float32Array', 'Int32Array', 'Uint8Array', 'Uint16Array', 'Float64Array', 'Int8Array', 'detached',
    'shared:Float32Array', 'shared:Int32Array', 'shared:Uint8Array'), len: fc.constantFrom(0, 1, 4, 6, 8, 24, 48) })
  .map((r) => ({ k: 'typed', ...r }) as Recipe);

const CONFIG_PATHS = [
  'hidden', 'experts', 'experts.0', 'experts.0.name', 'experts.0.count', 'experts.0.ffnHidden', 'experts.0.modality', 'experts.1', 'experts.1.modality',
  'experts.1.name', 'sharedExperts', 'sharedExperts.count', 'sharedExperts.ffnHidden', 'activation', 'router', 'router.type', 'router.topK',
  'router.score', 'router.normalize', 'router.scale', 'router.groupLimited', 'router.groupLimited.groups', 'router.groupLimited.topGroups',
  'router.bias', 'router.biasUpdateRate', 'router.temperature', 'router.minAffinity', 'router.loadPenalty', 'router.loadDecay', 'capacity',
  'capacity.factor', 'capacity.policy', 'losses', 'losses.balance', 'losses.balance.coeff', 'losses.balance.scope', 'losses.z', 'losses.z.coeff',
  'losses.orthogonality', 'losses.orthogonality.coeff', 'losses.orthogonality.mode', 'precision', 'precision.compute', 'precision.experts', 'device', 'seed',
];
const SPEC_PATHS = [
  'hidden', 'groups', 'groups.0', 'groups.0.count', 'groups.0.modality', 'groups.0.ffn', 'sharedCount', 'sharedFfn', 'activation', 'router',
  'router.type', 'router.topK', 'router.score', 'router.normalize', 'router.scale', 'router.limitGroups', 'router.limitTopGroups', 'router.useBias',
  'router.biasUpdateRate', 'router.temperature', 'router.minAffinity', 'router.loadPenalty', 'router.loadDecay', 'router.capacityFactor',
  'router.policy', 'router.balanceCoeff', 'router.scope', 'router.zCoeff', 'router.orthCoeff', 'router.orthMode', 'router.seed',
];
/** Values a config field may be set to: in-range, contradictory and wrong-typed ones. */
const configValue = fc.oneof(
  { weight: 3, arbitrary: prim },
  { weight: 2, arbitrary: fc.constantFrom('topk', 'affinity', 'expert-choice', 'sampled', 'softmax', 'sigmoid', 'swiglu', 'gelu', 'relu', 'position', 'score', 'reroute', 'micro', 'sequence', 'global').map((v) => ({ k: 'v', v }) as Recipe) },
  { weight: 1, arbitrary: fc.constantFrom({ k: 'v', v: {} } as Recipe, { k: 'v', v: [] } as Recipe, { k: 'v', v: { groups: 2, topGroups: 1 } } as Recipe, { k: 'v', v: { coeff: 0.1 } } as Recipe) },
);
const mutation = (paths: string[]) =>
  fc.record({ op: fc.constantFrom('delete', 'set', 'set', 'extra') as fc.Arbitrary<Mutation['op']>, path: fc.nat(paths.length - 1), value: configValue });
const configRecipe = fc.record({ base: fc.nat(BASE_CONFIGS.length - 1), mutations: fc.array(mutation(CONFIG_PATHS), { maxLength: 3 }) }).map((r) => ({ k: 'config', ...r }) as Recipe);
const specRecipe = fc.record({ base: fc.nat(BASE_CONFIGS.length - 1), mutations: fc.array(mutation(SPEC_PATHS), { maxLength: 2 }) }).map((r) => ({ k: 'spec', ...r }) as Recipe);

/** `inner` with a trap that disposes a world tensor (or the layer) on one of its reads. */
const trapOf = (inner: fc.Arbitrary<Recipe>) =>
  fc.record({ inner, at: fc.nat(7), on: fc.integer({ min: 1, max: 3 }), victim: fc.integer({ min: -1, max: TENSOR_COUNT - 1 }) }).map((r) => ({ k: 'trap', ...r }) as Recipe);
/** Mostly `valid`, sometimes `valid` trapped. */
const trapped = (valid: fc.Arbitrary<Recipe>) => fc.oneof({ weight: 4, arbitrary: valid }, { weight: 1, arbitrary: trapOf(valid) });

const anyArg: fc.Arbitrary<Recipe> = fc.letrec<{ any: Recipe }>((tie) => ({
  any: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: prim },
    { weight: 1, arbitrary: shapeRecipe },
    { weight: 3, arbitrary: tensorRecipe },
    { weight: 1, arbitrary: fakeRecipe },
    { weight: 1, arbitrary: typedRecipe },
    { weight: 1, arbitrary: configRecipe },
    { weight: 1, arbitrary: fc.array(fc.tuple(fc.constantFrom(...KEYS), tie('any')), { maxLength: 3 }).map((entries) => ({ k: 'obj', entries }) as Recipe) },
    { weight: 1, arbitrary: fc.array(tie('any'), { maxLength: 3 }).map((items) => ({ k: 'arr', items }) as Recipe) },
    { weight: 1, arbitrary: trapOf(fc.oneof(shapeRecipe, configRecipe, fc.array(tie('any'), { maxLength: 3 }).map((items) => ({ k: 'arr', items }) as Recipe))) },
  ),
})).any;
const anyNativeArg = fc.oneof({ weight: 3, arbitrary: anyArg }, { weight: 2, arbitrary: handleRecipe });

/** Mostly `valid`, sometimes anything. */
const arg = (valid: fc.Arbitrary<Recipe>, nativeCall = false) => fc.oneof({ weight: 5, arbitrary: valid }, { weight: 1, arbitrary: nativeCall ? anyNativeArg : anyArg });
const v = (value: unknown) => fc.constant({ k: 'v', v: value } as Recipe);
const vs = (...values: unknown[]) => fc.constantFrom(...values.map((value) => ({ k: 'v', v: value }) as Recipe));
const t = (...indices: number[]) => fc.constantFrom(...indices.map((i) => ({ k: 'tensor', i }) as Recipe));
const h = (...indices: number[]) => fc.constantFrom(...indices.map((i) => ({ k: 'handle', i }) as Recipe));
/** Tensor `main` (weight 4) or one of `others`: mostly shapes that fit together. */
const pt = (main: number, ...others: number[]) => fc.oneof({ weight: 4, arbitrary: t(main) }, { weight: 1, arbitrary: t(...others) });
const ph = (main: number, ...others: number[]) => fc.oneof({ weight: 4, arbitrary: h(main) }, { weight: 1, arbitrary: h(...others) });
const AUTO = { k: 'v', v: 'auto' } as Recipe;
const w = (what: Extract<Recipe, { k: 'world' }>['what']) => fc.constant({ k: 'world', what } as Recipe);
const obj = (entries: Record<string, fc.Arbitrary<Recipe>>) =>
  fc.record(entries, { requiredKeys: [] }).map((r) => ({ k: 'obj', entries: Object.entries(r) }) as Recipe);

// ---- the world: the tensors, layers and files the recipes point at ----------------------------------


class World {
  tensors: Tensor[] = [];
  /** Tensors made for native layers during the calls (disposed with the world). */
  owned: Tensor[] = [];
  fakes: unknown[] = [];
  layer!: MoELayer;
  layer2!: MoELayer;
  monitor = new ExpertMonitor({ historyLength: 4 });
  registry = new Registry();
  stats!: ReturnType<MoELayer['forward']>['stats'];
  optimizer!: AdamW;
  comm = dist.init({ backend: 'local' });
  paths: string[] = [];
  fileBytes!: Buffer;

  constructor(seed: number) {
    const r = (shape: number[], s: number) => Tensor.randn(shape, { seed: seed * 64 + s });
    const i32 = (values: number[], shape: number[]) => Tensor.from(Int32Array.from(values), shape);
    const bad = r([6, 4], 1);
    (bad.view() as Float32Array).set([NaN, Infinity, -Infinity], 5);
    const disposed = r([6, 4], 2);
    disposed.dispose();
    const x = r([6, 4], 0);
    this.tensors = [
      x, bad, Tensor.zeros([0, 4]), r([6, 8], 3), r([4, 4], 4), r([4], 5),
      i32([0, 1, 2, 3, -1, 0, 1, 1, 3, 2, 0, -1], [6, 2]), i32([5, -2, 2 ** 31 - 1, -(2 ** 31), 4, 0, 1, 2, 3, 9, 0, 0], [6, 2]),
      i32([0, 1, 0, 1, 1, 0], [6]), i32([0, 7, -1, 2 ** 31 - 1, 1, 0], [6]),
      r([4, 3, 4], 6), r([6, 3], 7), x.to('bf16'), x.to('e4m3'), Tensor.from(new Uint8Array(6), [6]), Tensor.zeros([]),
      Tensor.zeros([1, 1, 1, 1, 1, 1, 1, 1]), disposed, Tensor.wrap(r([6, 4], 8).handle, 'cuda:0'), i32([3, 3, 3, 3], [4]),
      r([6, 2], 9), r([12, 4], 10), i32([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5], [12]), i32([0, 6, -1, 2 ** 31 - 1, 1, 1, 2, 2, 3, 3, 4, 4], [12]),
      r([12], 11), r([6, 4], 12), Tensor.zeros([4, 1, 4]), r([0, 3], 13), i32([0, 0, 0, 0], [4]), r([4, 4], 14).to('f16'), r([4, 4], 15), i32([], [0]),
    ];
    if (this.tensors.length !== TENSOR_COUNT) throw new Error(`world has ${this.tensors.length} tensors, TENSOR_COUNT is ${TENSOR_COUNT}`);
    const fake = Object.create(Tensor.prototype) as Tensor;
    this.fakes = [fake, { shape: [6, 4], dtype: 'f32', device: 'cpu' }, { handle: {}, shape: [6, 4], dtype: 'f32' }, new Proxy({}, {})];
    this.layer = new MoELayer(BASE_CONFIGS[0]);
    this.layer2 = new MoELayer(BASE_CONFIGS[2]);
    const out = this.layer.forward(x);
    this.stats = out.stats;
    disposeDeep(out);
    this.optimizer = new AdamW(this.layer, { lr: 1e-3 });
    this.monitor.observe('l', this.stats);
    const file = path.join(tmp, `w${seed}.safetensors`);
    saveSafetensors(file, { x, i: this.tensors[6], b: this.tensors[12] }, { note: 'fuzz' });
    this.fileBytes = fs.readFileSync(file);
    const garbage = path.join(tmp, 'garbage.safetensors');
    fs.writeFileSync(garbage, Buffer.from('\xff\xff\xff\xff\xff\xff\xff\x7f{"a":1}'));
    this.paths = [file, garbage, path.join(tmp, `out${seed}.safetensors`), tmp, path.join(tmp, 'missing', 'x.safetensors'), '', path.join(tmp, 'h.svg')];
  }

  /** Copies made for a call, freed with the world. */
  own(dict: Record<string, Tensor>): Record<string, Tensor> {
    this.owned.push(...Object.values(dict));
    return dict;
  }

  /** `value` with a read that disposes a world tensor or the layer (arrays: an accessor entry; objects: a Proxy). */
  trap(value: unknown, r: Extract<Recipe, { k: 'trap' }>): unknown {
    let reads = 0;
    const fire = () => {
      if (++reads !== r.on) return;
      if (r.victim < 0) this.layer.dispose();
      else this.tensors[r.victim].dispose();
    };
    if (Array.isArray(value) && value.length > 0) {
      const at = r.at % value.length;
      const entry: unknown = value[at];
      Object.defineProperty(value, at, { get: () => { fire(); return entry; }, enumerable: true });
      trappedValues.add(value);
      return value;
    }
    if (value !== null && typeof value === 'object' && !(value instanceof Tensor)) {
      const proxy = new Proxy(value, { get: (target, key, receiver) => { fire(); return Reflect.get(target, key, receiver); } });
      trappedValues.add(proxy);
      return proxy;
    }
    return value;
  }

  dispose(): void {
    for (const t of [...this.tensors, ...this.owned]) t.dispose();
    this.layer.dispose();
    this.layer2.dispose();
    this.optimizer.dispose();
    this.comm.close();
  }

  make(r: Recipe): unknown {
    switch (r.k) {
      case 'v': return structuredClone(r.v);
      case 'special': return ({ undefined: undefined, NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, '-0': -0, symbol: Symbol('fuzz'), bigint: 7n,
        function: () => 1, date: new Date(0), map: new Map([['a', 1]]) } as Record<string, unknown>)[r.v];
      case 'tensor': return this.tensors[r.i];
      case 'handle': return this.tensors[r.i].disposed ? nativeDisposed() : this.tensors[r.i].handle;
      case 'fake': return this.fakes[r.i];
      case 'typed': {
        if (r.kind === 'detached') {
          const array = new Float32Array(r.len);
          structuredClone(array.buffer, { transfer: [array.buffer] });
          return array;
        }
        if (r.kind.startsWith('shared:')) {
          const Ctor = (globalThis as unknown as Record<string, new (b: SharedArrayBuffer) => ArrayBufferView & { BYTES_PER_ELEMENT: number }>)[r.kind.slice(7)];
          const size = (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
          return new Ctor(new SharedArrayBuffer(r.len * size));
        }
        const Ctor = (globalThis as unknown as Record<string, new (n: number) => ArrayBufferView>)[r.kind];
        return new Ctor(r.len);
      }
      case 'config': return mutate(structuredClone(BASE_CONFIGS[r.base]) as unknown as Record<string, unknown>, r.mutations, CONFIG_PATHS, this);
      case 'spec': return mutate(structuredClone(validateConfig(BASE_CONFIGS[r.base]).spec) as unknown as Record<string, unknown>, r.mutations, SPEC_PATHS, this);
      case 'obj': return Object.fromEntries(r.entries.map(([key, value]) => [key, this.make(value)]));
      case 'arr': return r.items.map((item) => this.make(item));
      case 'path': return this.paths[r.which % this.paths.length];
      case 'trap': return this.trap(this.make(r.inner), r);
      case 'bytes': {
        const bytes = Buffer.from(this.fileBytes);
        if (r.header >= 0) bytes.writeUInt32LE(r.header, 0);
        if (r.flip >= 0) bytes[r.flip % bytes.length] ^= 0xff;
        return r.cut >= 0 ? bytes.subarray(0, r.cut % (bytes.length + 1)) : bytes;
      }
      case 'world':
        switch (r.what) {
          case 'comm': return this.comm;
          case 'layer': return this.layer;
          case 'layer2': return this.layer2;
          case 'monitor': return this.monitor;
          case 'registry': return this.registry;
          case 'stats': return this.stats;
          // A trap may have disposed the layer: its (empty) state dict is then an argument like any other.
          case 'stateDict': return this.layer.parameters()['router.weight'].disposed ? {} : this.own(this.layer.stateDict());
          case 'optimizerState': return this.layer.parameters()['router.weight'].disposed ? {} : this.own(this.optimizer.stateDict());
          case 'optimizer': return this.optimizer;
          case 'trainable': return { parameters: () => ({ a: this.tensors[4] }), grads: () => ({ a: this.tensors[30] }) };
          case 'badTrainable': return { parameters: () => null, grads: () => 7 };
        }
    }
  }
}

let disposedHandle: NativeTensor | undefined;
function nativeDisposed(): NativeTensor {
  if (!disposedHandle) {
    disposedHandle = new native.NativeTensor(0, [2]);
    disposedHandle.dispose();
  }
  return disposedHandle;
}

function mutate(root: Record<string, unknown>, mutations: Mutation[], paths: string[], world: World): unknown {
  for (const m of mutations) {
    const keys = paths[m.path].split('.');
    const last = keys.pop() as string;
    let parent: unknown = root;
    for (const key of keys) parent = parent !== null && typeof parent === 'object' ? (parent as Record<string, unknown>)[key] : undefined;
    if (parent === null || typeof parent !== 'object') continue;
    const target = parent as Record<string, unknown>;
    if (m.op === 'delete') delete target[last];
    else if (m.op === 'set') target[last] = world.make(m.value);
    else target[`${last}Extra`] = world.make(m.value);
  }
  return root;
}

/** Disposes every Tensor and native tensor reachable from a result (two levels down). */
function disposeDeep(value: unknown, depth = 0): void {
  if (value instanceof Tensor) {
    if (!value.disposed) value.dispose();
    return;
  }
  if (value === null || typeof value !== 'object' || depth > 3 || ArrayBuffer.isView(value)) return;
  if (typeof (value as NativeTensor).dispose === 'function' && 'nbytes' in (value as object)) {
    (value as NativeTensor).dispose();
    return;
  }
  if (value instanceof MoELayer || value instanceof AdamW || value instanceof ExpertMonitor) return;
  for (const item of Object.values(value as object)) disposeDeep(item, depth + 1);
}

/** Values with a trap (World.trap): show() names them without reading them, which would fire the trap. */
const trappedValues = new WeakSet<object>();

function show(value: unknown): string {
  if (value !== null && typeof value === 'object' && trappedValues.has(value)) return Array.isArray(value) ? 'trapped array' : 'trapped object';
  if (value instanceof Tensor) return Object.hasOwn(value, 'shape') ? value.toString() : 'Object.create(Tensor.prototype)';
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'symbol') return 'Symbol()';
  if (typeof value === 'function') return 'function';
  if (ArrayBuffer.isView(value)) return `${value.constructor.name}(${(value as Uint8Array).length})`;
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`;
  if (value && typeof value === 'object') {
    const name = value.constructor?.name ?? 'Object';
    if (name !== 'Object') return name;
    return `{${Object.entries(value).map(([k, x]) => `${k}: ${show(x)}`).slice(0, 12).join(', ')}}`;
  }
  return typeof value === 'number' && Object.is(value, -0) ? '-0' : String(value);
}

// ---- targets -----------------------------------------------------------------------------------------

/**
 * native: calls the raw addon. io: touches the file system, whose own refusals (Node's system
 * errors with a `code` such as ENOENT or EISDIR) pass through unchanged, as Node's fs does.
 * live: returns its owner's tensors (parameters(), grads(), moments()), which are not disposed.
 * receiver: the class whose instance argument 0 is `this`; with another `this`, V8 or Node-API
 * refuse the call before moekit's code runs (TypeError "Illegal invocation"), which must not crash.
 */
type Target = { name: string; args: fc.Arbitrary<Recipe>[]; call: (...a: unknown[]) => unknown; native?: boolean; io?: boolean; live?: boolean; receiver?: Function };
/* eslint-disable @typescript-eslint/no-explicit-any */
type AnyFn = (...a: any[]) => any;
const x = t(0, 0, 0, 1, 2, 3, 25);
const anyT = tensorRecipe;
const paths = fc.nat(6).map((which) => ({ k: 'path', which }) as Recipe);
const bytes = fc.record({ cut: fc.integer({ min: -1, max: 400 }), flip: fc.integer({ min: -1, max: 400 }), header: fc.constantFrom(-1, -1, 0, 7, 2 ** 31, 4294967295) }).map((b) => ({ k: 'bytes', ...b }) as Recipe);

const method = (name: string, receiver: fc.Arbitrary<Recipe>, fn: string, args: fc.Arbitrary<Recipe>[]): Target => ({
  name,
  args: [receiver, ...args],
  call: (self, ...rest) => (self as Record<string, AnyFn>)[fn](...rest),
});
const io = (target: Target): Target => ({ ...target, io: true });
/** The result holds the owner's live tensors: not disposed after the call. */
const live = (target: Target): Target => ({ ...target, live: true });
const getter = (name: string, receiver: fc.Arbitrary<Recipe>, prop: string): Target => ({ name, args: [receiver], call: (self) => (self as Record<string, unknown>)[prop] });

const forwardOpts = obj({ modality: arg(pt(8, 9, 5)), seqLens: arg(trapped(fc.oneof({ weight: 3, arbitrary: vs([6], [2, 4], [3, 3]) }, { weight: 1, arbitrary: vs([7], [-1, 7], []) }))), training: arg(vs(true, true, false)), checkFinite: arg(vs(true, false)) });

const publicTargets: Target[] = [
  { name: 'Tensor.from', args: [arg(fc.oneof(typedRecipe, fc.array(numRecipe, { maxLength: 8 }).map((items) => ({ k: 'arr', items }) as Recipe))), arg(shapeRecipe), arg(obj({ dtype: arg(fc.constantFrom(...STRINGS).map((s) => ({ k: 'v', v: s }) as Recipe)), device: arg(vs('cpu', 'cuda', 'cuda:0')) }))],
    call: (d, s, o) => Tensor.from(d as never, s as never, o as never) },
  { name: 'Tensor.zeros', args: [arg(shapeRecipe), arg(obj({ dtype: arg(vs('f32', 'i32', 'e5m2', 'x')), device: arg(vs('cpu', 'cuda:1')) }))], call: (s, o) => Tensor.zeros(s as never, o as never) },
  { name: 'Tensor.randn', args: [arg(shapeRecipe), arg(obj({ seed: arg(numRecipe), std: arg(numRecipe), dtype: arg(vs('f32', 'bf16', 'i32', 'u8')) }))], call: (s, o) => Tensor.randn(s as never, o as never) },
  method('tensor.toArray', anyT, 'toArray', []),
  method('tensor.view', anyT, 'view', []),
  method('tensor.to', anyT, 'to', [arg(fc.constantFrom(...STRINGS).map((s) => ({ k: 'v', v: s }) as Recipe))]),
  method('tensor.toString', anyT, 'toString', []),
  getter('tensor.numel', anyT, 'numel'),
  getter('tensor.nbytes', anyT, 'nbytes'),
  { name: 'devices', args: [], call: () => devices() },
  { name: 'buildInfo', args: [], call: () => buildInfo() },
  { name: 'liveBytes', args: [], call: () => liveBytes() },
  { name: 'availableMemory', args: [], call: () => availableMemory() },
  { name: 'cuda.stats', args: [arg(vs('cuda', 'cuda:0', 'cpu', 'cuda:9', undefined))], call: (d) => cuda.stats(d as never) },
  { name: 'cuda.resetStats', args: [arg(vs('cuda', 'cuda:0', 'cuda:1'))], call: (d) => cuda.resetStats(d as never) },
  { name: 'cuda.synchronize', args: [arg(vs('cuda', 'cuda:0', 'cpu'))], call: (d) => cuda.synchronize(d as never) },
  { name: 'saveSafetensors', io: true, args: [arg(paths), arg(obj({ a: arg(anyT), b: arg(anyT) })), arg(obj({ note: arg(vs('x', 'y')) }))], call: (p, ts, m) => saveSafetensors(p as never, ts as never, m as never) },
  { name: 'loadSafetensors', io: true, args: [arg(paths)], call: (p) => loadSafetensors(p as never) },
  { name: 'serializeSafetensors', args: [arg(obj({ a: arg(anyT), __metadata__: arg(anyT) })), arg(obj({ k: arg(vs('v')) }))], call: (ts, m) => serializeSafetensors(ts as never, m as never) },
  { name: 'parseSafetensors', args: [arg(bytes), arg(vs('buf'))], call: (b, s) => parseSafetensors(b as never, s as never) },
  { name: 'new MoELayer', args: [arg(configRecipe)], call: (c) => new MoELayer(c as never) },
  { name: 'MoELayer config→forward→backward', args: [arg(configRecipe), arg(x), arg(forwardOpts), arg(t(0, 25, 3))],
    call: (c, xx, o, dy) => {
      const layer = new MoELayer(c as never);
      try {
        disposeDeep(layer.forward(xx as never, o as never));
        disposeDeep(layer.backward(dy as never));
        layer.endStep();
        return layer.stateDict();
      } finally {
        layer.dispose();
      }
    } },
  method('layer.forward', fc.oneof(w('layer'), w('layer2')), 'forward', [arg(pt(0, 1, 2, 3, 25)), arg(forwardOpts)]),
  method('layer.backward', fc.oneof(w('layer'), w('layer2')), 'backward', [arg(pt(25, 0, 3, 2))]),
  method('layer.endStep', w('layer'), 'endStep', []),
  live(method('layer.parameters', w('layer'), 'parameters', [])),
  live(method('layer.grads', w('layer'), 'grads', [])),
  method('layer.zeroGrad', w('layer'), 'zeroGrad', []),
  method('layer.stateDict', w('layer'), 'stateDict', []),
  method('layer.loadStateDict', w('layer'), 'loadStateDict', [arg(fc.oneof(w('stateDict'), obj({ 'router.weight': arg(t(4, 29, 0)), 'router.bias': arg(t(5)), 'router.load': arg(t(5)) })))]),
  getter('layer.step', w('layer'), 'step'),
  getter('layer.experts', w('layer2'), 'experts'),
  { name: 'ops.route', args: [arg(pt(0, 1, 2, 3, 25)), arg(pt(4, 30, 0)),
    arg(fc.oneof({ weight: 3, arbitrary: vs({ topK: 2 }, { topK: 1, score: 'sigmoid', normalize: true }, { type: 'affinity', topK: 2, temperature: 0.5, minAffinity: 0 }, { type: 'sampled', topK: 2 }, { topK: 2, groupLimited: { groups: 2, topGroups: 1 } }) },
      { weight: 1, arbitrary: obj({ topK: arg(vs(1, 2, 5)), type: arg(vs('topk', 'affinity', 'sampled', 'expert-choice')), score: arg(vs('softmax', 'sigmoid')), bias: arg(vs(true, false)), groupLimited: arg(vs({ groups: 2, topGroups: 1 }, { groups: 3, topGroups: 1 })) }) })),
    arg(fc.oneof({ weight: 3, arbitrary: vs({}, { capacity: { factor: 1 } }, { capacity: { factor: 1, policy: 'reroute' } }, { capacity: { factor: 0.5, policy: 'score' }, seed: 3 }) },
      { weight: 1, arbitrary: obj({ modality: arg(t(8, 9)), bias: arg(t(5, 19)), load: arg(t(5)), seed: arg(numRecipe), experts: arg(vs([{ count: 2, modality: 0 }, { count: 2, modality: 1 }], [{ count: 4 }], [{ count: 5 }])), capacity: arg(vs({ factor: 1 }, { factor: 1, policy: 'reroute' }, { factor: -1 })) }) })),
    arg(fc.oneof({ weight: 3, arbitrary: fc.constant(AUTO) }, { weight: 1, arbitrary: t(20, 0) }))],
    call: (xx, wt, r, o, dw) => {
      const out = ops.route(xx as never, wt as never, r as never, o as never);
      const grads = out.backward((dw === 'auto' ? Tensor.randn([...out.weights.shape], { seed: 1 }) : dw) as never);
      disposeDeep(out);
      return grads;
    } },
  { name: 'ops.permute', args: [arg(pt(0, 1, 2, 3, 25)), arg(pt(6, 7, 8, 9, 22, 28)), arg(fc.oneof(vs(4, 4, 6, 1), numRecipe)), arg(fc.oneof(fc.constant(AUTO), t(21, 0, 2)))],
    call: (xx, e, n, d) => {
      const out = ops.permute(xx as never, e as never, n as never);
      const dx = out.backward((d === 'auto' ? Tensor.randn([...out.output.shape], { seed: 2 }) : d) as never);
      disposeDeep(out);
      return dx;
    } },
  { name: 'ops.unpermute', args: [arg(pt(21, 11, 0)), arg(pt(22, 23, 6, 31)), arg(fc.oneof(pt(24, 5), v(null))), arg(fc.oneof(vs(6, 6, 12, 0), numRecipe)), arg(pt(0, 21))],
    call: (rows, rt, wt, n, d) => {
      const out = ops.unpermute(rows as never, rt as never, wt as never, n as never);
      const grads = out.backward(d as never);
      disposeDeep(out);
      return grads;
    } },
  { name: 'ops.groupedGemm', args: [arg(pt(0, 21, 2)), arg(pt(10, 26)), arg(fc.oneof({ weight: 4, arbitrary: vs([2, 2, 1, 1], [6, 0, 0, 0], [0, 0, 0, 6], [3, 3, 0, 0]) }, { weight: 1, arbitrary: fc.oneof(vs([3, 3, 3, 3], [12, 0, 0, 0], [-1, 7, 0, 0]), shapeRecipe) })), arg(pt(11, 0))],
    call: (a, wt, sizes, d) => {
      const out = ops.groupedGemm(a as never, wt as never, sizes as never);
      const grads = out.backward(d as never);
      disposeDeep(out);
      return grads;
    } },
  { name: 'losses.loadBalance', args: [arg(t(0, 1, 4, 25)), arg(t(19, 28, 5, 8)), arg(obj({ topK: arg(vs(1, 2)), coeff: arg(numRecipe), tokens: arg(numRecipe) }))], call: (p, c, o) => losses.loadBalance(p as never, c as never, o as never) },
  { name: 'losses.zLoss', args: [arg(t(0, 1, 4, 2)), arg(obj({ coeff: arg(numRecipe) }))], call: (l, o) => losses.zLoss(l as never, o as never) },
  { name: 'losses.routerOrthogonality', args: [arg(t(4, 0, 1, 29)), arg(obj({ coeff: arg(numRecipe), mode: arg(vs('all', 'perGroup', 'crossGroup', 'x')), groupSizes: arg(vs([2, 2], [4], [1, 3], [0, 4], [5])) }))],
    call: (wt, o) => losses.routerOrthogonality(wt as never, o as never) },
  { name: 'new AdamW', args: [arg(fc.oneof(w('layer'), w('trainable'), w('badTrainable'))), arg(obj({ lr: arg(numRecipe), betas: arg(vs([0.9, 0.99], [1, 0.5], [0.9])), eps: arg(numRecipe), weightDecay: arg(numRecipe) }))],
    call: (target, o) => {
      const opt = new AdamW(target as never, o as never);
      try {
        opt.step();
        return opt.stateDict();
      } finally {
        opt.dispose();
      }
    } },
  method('adamw.step', w('optimizer'), 'step', []),
  live(method('adamw.moments', w('optimizer'), 'moments', [arg(vs('router.weight', 'nope'))])),
  method('adamw.stateDict', w('optimizer'), 'stateDict', []),
  method('adamw.loadStateDict', w('optimizer'), 'loadStateDict', [arg(fc.oneof(w('optimizerState'), w('optimizerState'), obj({ step: arg(t(19, 28, 31, 5)), 'm.router.weight': arg(t(4, 29)), 'v.router.weight': arg(t(4, 0)) }), w('stateDict')))]),
  { name: 'new ExpertMonitor', args: [arg(obj({ ewmaAlpha: arg(numRecipe), historyLength: arg(numRecipe), deadWindow: arg(numRecipe) }))], call: (o) => new ExpertMonitor(o as never) },
  method('monitor.observe', w('monitor'), 'observe', [arg(vs('l', 'm', '')), arg(fc.oneof(w('stats'), obj({ counts: arg(t(19)), tokens: arg(numRecipe), f: arg(vs([1, 2])) }))), arg(fc.oneof(v(undefined), numRecipe))]),
  method('monitor.summary', w('monitor'), 'summary', [arg(vs('l', 'zz'))]),
  method('monitor.history', w('monitor'), 'history', [arg(vs('l', 'zz'))]),
  method('monitor.layers', w('monitor'), 'layers', []),
  method('monitor.toPrometheus', w('monitor'), 'toPrometheus', [arg(w('registry')), arg(obj({ prefix: arg(vs('moekit_', 'bad prefix', '9x')) }))]),
  { ...method('monitor.writeJsonl', w('monitor'), 'writeJsonl', [arg(paths)]), io: true },
  { name: 'ExpertMonitor.readJsonl', io: true, args: [arg(paths), arg(obj({ historyLength: arg(numRecipe) }))], call: (p, o) => ExpertMonitor.readJsonl(p as never, o as never) },
  io(method('monitor.renderHeatmap', w('monitor'), 'renderHeatmap', [arg(fc.constant({ k: 'path', which: 6 } as Recipe)), arg(obj({ title: arg(vs('t', '<b>')), layers: arg(vs(['l'], ['zz'], [])), last: arg(numRecipe) }))])),
  { name: 'mergeExpertStats', args: [arg(fc.oneof(fc.array(w('stats'), { maxLength: 3 }).map((items) => ({ k: 'arr', items }) as Recipe), anyArg))], call: (l) => mergeExpertStats(l as never) },
  { name: 'loadImbalance', args: [arg(fc.oneof(vs([1, 2, 3], [], [0, 0], [NaN]), t(19, 5)))], call: (c) => loadImbalance(c as never) },
  { name: 'stepRates', args: [arg(w('stats'))], call: (s) => stepRates(s as never) },
  method('tensor.dispose', anyT, 'dispose', []),
  { name: 'layer.dispose, then forward', args: [arg(configRecipe), arg(pt(0, 2))],
    call: (c, xx) => {
      const layer = new MoELayer(c as never);
      layer.dispose();
      return layer.forward(xx as never);
    } },
  method('comm.allToAllV', w('comm'), 'allToAllV', [arg(pt(0, 3, 21, 2, 17)), arg(trapped(fc.oneof({ weight: 3, arbitrary: vs([6], [12], [0]) }, { weight: 1, arbitrary: vs([-1], [6, 0], [2 ** 53]) })))]),
  method('comm.allReduce', w('comm'), 'allReduce', [arg(pt(0, 6, 2, 17)), arg(vs('sum', 'avg', 'max', 'min'))]),
  ...semanticTargets(),
];

/** A thrown plain Error: counted as an offender, like an untyped error. */
function violated(what: string): never {
  throw new Error(`semantic: ${what}`);
}

/** The bytes of a layer's live parameters and (when every tensor is live) its state dict. */
function snapshot(layer: MoELayer): Map<string, string> {
  const out = new Map<string, string>();
  const add = (name: string, t: Tensor) => out.set(name, Buffer.from(t.view().buffer.slice(0)).toString('base64'));
  for (const [name, t] of Object.entries(layer.parameters())) if (!t.disposed) add(name, t);
  if (Object.values(layer.parameters()).every((t) => !t.disposed)) {
    for (const [name, t] of Object.entries(layer.stateDict())) {
      add(`state ${name}`, t);
      t.dispose();
    }
  }
  return out;
}

function semanticTargets(): Target[] {
  const targets: Target[] = [
    // DESIGN §4: a failed call writes nothing; a state dict with a fault is refused.
    { name: 'layer.loadStateDict (semantic)', args: [fc.nat(BASE_CONFIGS.length - 1).map((v) => ({ k: 'v', v }) as Recipe), vs(...STATE_DICT_FAULTS), fc.nat(HOSTILE_NAMES.length - 1).map((v) => ({ k: 'v', v }) as Recipe)],
      call: (base, fault, nameIndex) => {
        const layer = new MoELayer(BASE_CONFIGS[base as number]);
        const source = new MoELayer({ ...BASE_CONFIGS[base as number], seed: 77 });
        const made: Tensor[] = [];
        try {
          layer.forward(world.tensors[0]);
          source.forward(world.tensors[0]);
          let sd: Record<string, Tensor> = source.stateDict();
          made.push(...Object.values(sd));
          const E = sd['router.bias'].shape[0];
          const withValue = (value: number) => {
            const t = Tensor.from(new Float32Array(E).fill(0.25).map((v, i) => (i === E - 1 ? value : v)), [E]);
            made.push(t);
            return t;
          };
          switch (fault as (typeof STATE_DICT_FAULTS)[number]) {
            case 'hostile-name': Object.defineProperty(sd, HOSTILE_NAMES[nameIndex as number], { value: sd['router.load'], enumerable: true }); break;
            case 'inherited-entry': {
              const { 'router.weight': weight, ...rest } = sd;
              sd = Object.assign(Object.create({ 'router.weight': weight }) as Record<string, Tensor>, rest);
              break;
            }
            case 'disposed-entry': sd['router.weight'].dispose(); break;
            case 'wrong-shape': sd['router.weight'] = world.tensors[5]; break;
            case 'nan-bias': sd['router.bias'] = withValue(NaN); break;
            case 'inf-load': sd['router.load'] = withValue(Infinity); break;
            case 'disposed-parameter': Object.values(layer.parameters()).slice(-1)[0].dispose(); break;
            case 'none': break;
          }
          const before = snapshot(layer);
          let threw: unknown;
          try {
            layer.loadStateDict(sd);
          } catch (error) {
            threw = error;
          }
          if (fault === 'none') {
            if (threw) throw threw;
            return;
          }
          if (!threw) violated(`loadStateDict accepted a state dict with fault '${fault}'`);
          const after = snapshot(layer);
          for (const [name, bytes] of before) if (after.get(name) !== bytes) violated(`a failed loadStateDict ('${fault}') changed ${name}`);
          throw threw;
        } finally {
          for (const t of made) t.dispose();
          layer.dispose();
          source.dispose();
        }
      } },
    // DESIGN §4: a non-finite token throws ArgumentError naming it, for every router type and device.
    { name: 'forward, a non-finite token (semantic)', args: [fc.nat(BASE_CONFIGS.length - 1).map((v) => ({ k: 'v', v }) as Recipe), vs(NaN, Infinity, -Infinity), fc.nat(5).map((v) => ({ k: 'v', v }) as Recipe), fc.nat(3).map((v) => ({ k: 'v', v }) as Recipe), vs(true, false), vs(...(EMULATED ? ['cpu', 'cuda:0'] : ['cpu']))],
      call: (base, value, token, column, training, device) => {
        const layer = new MoELayer({ ...BASE_CONFIGS[base as number], device: device as 'cpu' });
        const values = world.tensors[0].toArray() as Float32Array;
        values[(token as number) * 4 + (column as number)] = value as number;
        const x = Tensor.from(values, [6, 4], { device: device as 'cpu' });
        try {
          layer.forward(x, { training: training as boolean, ...(BASE_CONFIGS[base as number].losses?.balance?.scope === 'sequence' ? { seqLens: [6] } : {}) });
          violated(`a token holding ${value} was accepted (router ${BASE_CONFIGS[base as number].router?.type ?? 'topk'}, ${device})`);
        } catch (error) {
          if (!(error instanceof ArgumentError) || !(error as Error).message.endsWith(`(token ${token})`)) {
            if ((error as Error).message.startsWith('semantic:')) throw error;
            violated(`expected ArgumentError naming token ${token}, got ${(error as Error).name}: ${(error as Error).message}`);
          }
          throw error;
        } finally {
          layer.dispose();
          x.dispose();
        }
      } },
    // A typed array over a SharedArrayBuffer: its values, or a typed error (never an untyped one).
    { name: 'Tensor.from a SharedArrayBuffer (semantic)', args: [vs('Float32Array', 'Int32Array', 'Uint8Array', 'Uint16Array'), fc.integer({ min: 0, max: 9 }).map((v) => ({ k: 'v', v }) as Recipe)],
      call: (kind, length) => {
        const dtype = ({ Float32Array: 'f32', Int32Array: 'i32', Uint8Array: 'u8', Uint16Array: 'bf16' } as Record<string, 'f32' | 'i32' | 'u8' | 'bf16'>)[kind as string];
        const Ctor = (globalThis as unknown as Record<string, new (b: SharedArrayBuffer) => Float32Array>)[kind as string];
        const data = new Ctor(new SharedArrayBuffer((length as number) * (Ctor as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT));
        for (let i = 0; i < data.length; i++) data[i] = i + 1;
        const t = Tensor.from(data, [length as number], { dtype });
        try {
          const back = kind === 'Float32Array' ? t.toArray() : t.view();  // the raw dtypes: their storage as stored
          if (Array.from(back).join() !== Array.from(data).join()) violated(`Tensor.from(${kind} over a SharedArrayBuffer) holds other values`);
        } finally {
          t.dispose();
        }
      } },
  ];
  if (EMULATED) {
    // The cpu and the emulated cuda device agree on every input both accept.
    // Configs with at most one mutation (mostly valid), world tensors as x.
    const config = fc.record({ base: fc.nat(BASE_CONFIGS.length - 1), mutations: fc.array(mutation(CONFIG_PATHS), { maxLength: 1 }) }).map((r) => ({ k: 'config', ...r }) as Recipe);
    targets.push({ name: 'cpu vs cuda forward/backward (semantic)', args: [config, x, obj({ seqLens: vs([6], [2, 4]), training: vs(true, false) }), fc.nat(1000).map((v) => ({ k: 'v', v }) as Recipe)],
      call: (c, xx, o, dySeed) => {
        const outcome = (device: 'cpu' | 'cuda:0') => {
          const made: Tensor[] = [];
          let layer: MoELayer | undefined;
          try {
            layer = new MoELayer({ ...(c as MoEConfig), device });
            const input = (xx as Tensor).to(device);
            made.push(input);
            const out = layer.forward(input, o as never);
            made.push(out.y, out.routing.indices, out.routing.weights, out.routing.keep, ...Object.values(out.routing.assignments));
            const result = { y: out.y.toArray() as Float32Array, experts: Array.from(out.routing.assignments.expert.toArray()), dx: undefined as Float32Array | undefined };
            if ((o as { training?: boolean } | undefined)?.training !== false) {
              const dy = Tensor.randn([...out.y.shape], { seed: dySeed as number, device });
              const { dx } = layer.backward(dy);
              made.push(dy, dx);
              result.dx = dx.toArray() as Float32Array;
            }
            return { ok: result };
          } catch (error) {
            return { error: error as Error };
          } finally {
            for (const t of made) t.dispose();
            layer?.dispose();
          }
        };
        const cpu = outcome('cpu');
        const cuda = outcome('cuda:0');
        if (cpu.error || cuda.error) {
          if (cpu.error?.name !== cuda.error?.name) violated(`cpu ${cpu.error?.name ?? 'returned'}, cuda ${cuda.error?.name ?? 'returned'}: ${(cpu.error ?? cuda.error)?.message}`);
          throw cpu.error;
        }
        const relative = (a: Float32Array, b: Float32Array) => {
          let d = 0, n = 0;
          for (let i = 0; i < a.length; i++) { d += (a[i] - b[i]) ** 2; n += b[i] ** 2; }
          return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30);
        };
        const a = cpu.ok as NonNullable<typeof cpu.ok>, b = cuda.ok as NonNullable<typeof cuda.ok>;
        if (a.experts.join() !== b.experts.join()) violated('cpu and cuda chose different experts');
        if (relative(b.y, a.y) > 1e-4) violated(`y differs: relative error ${relative(b.y, a.y)}`);
        if (a.dx && b.dx && relative(b.dx, a.dx) > 1e-4) violated(`dx differs: relative error ${relative(b.dx, a.dx)}`);
      } });
  }
  return targets;
}

// The raw addon: validation in lib/ is bypassed, so native code must check everything itself.
const N = true;
const na = (valid: fc.Arbitrary<Recipe>) => arg(valid, N);
const nFloat = h(0, 1, 2, 3, 4, 5, 10, 11, 20, 21, 24, 25, 26, 27, 30);
const nNum = fc.oneof(vs(0, 1, 2, 4, 6, 12), numRecipe);
const nSizes = trapped(fc.oneof({ weight: 3, arbitrary: vs([2, 2, 1, 1], [6, 0, 0, 0], [3, 3, 0, 0]) }, { weight: 1, arbitrary: fc.oneof(vs([3, 3, 3, 3], [12, 0, 0, 0], [-1, 7, 0, 0], [2 ** 31, 0, 0, 0], [-6, 12, 0, 0]), shapeRecipe) }));
const nOpts = trapped(obj({ bias: na(fc.oneof(h(5, 19), v(null))), load: na(fc.oneof(h(5, 24), v(null))), modality: na(fc.oneof(h(8, 9, 5), v(null))) }));
const nSpec = trapped(specRecipe);
const nExpert = obj({ w1: na(h(10, 26, 4)), w3: na(h(10, 26)), w2: na(h(10, 26, 4)) });
const nParams = obj({ routerWeight: na(h(4, 30)), routerBias: na(h(5)), routerLoad: na(h(5)), groups: na(fc.array(nExpert, { maxLength: 2 }).map((items) => ({ k: 'arr', items }) as Recipe)), shared: na(nExpert) });
const nGrads = obj({ routerWeight: na(h(4)), groups: na(fc.array(nExpert, { maxLength: 2 }).map((items) => ({ k: 'arr', items }) as Recipe)), shared: na(nExpert) });
const nativeFn = (name: string, args: fc.Arbitrary<Recipe>[], fn: keyof typeof native): Target => ({
  name: `native.${name}`,
  args,
  native: true,
  call: (...a) => (native[fn] as AnyFn)(...a),
});
const nativeMethod = (name: string, args: fc.Arbitrary<Recipe>[], pick: (self: NativeTensor) => AnyFn): Target => ({
  name: `native.NativeTensor#${name}`,
  args: [fc.oneof({ weight: 4, arbitrary: handleRecipe }, { weight: 1, arbitrary: anyArg }), ...args],
  native: true,
  receiver: native.NativeTensor,
  call: (self, ...rest) => pick(self as NativeTensor).apply(self, rest),
});
const proto = () => native.NativeTensor.prototype as unknown as Record<string, AnyFn>;

const nativeTargets: Target[] = [
  { name: 'native.new NativeTensor', args: [na(vs(0, 1, 3, 4, 6, 7, -1, 2.5)), na(shapeRecipe)], native: true, call: (d, s) => new native.NativeTensor(d as never, s as never) },
  { name: 'native.NativeTensor.fromData', args: [na(typedRecipe), na(vs(0, 1, 2, 3, 4, 5, 6)), na(shapeRecipe), na(vs(true, false))], native: true,
    call: (d, dt, s, raw) => native.NativeTensor.fromData(d as never, dt as never, s as never, raw as never) },
  { name: 'native.NativeTensor.randn', args: [na(shapeRecipe), na(nNum), na(nNum), na(vs(0, 1, 3, 5))], native: true,
    call: (s, seed, std, dt) => native.NativeTensor.randn(s as never, seed as never, std as never, dt as never) },
  nativeMethod('view', [], () => proto().view),
  nativeMethod('toArray', [], () => proto().toArray),
  nativeMethod('cast', [na(vs(0, 1, 2, 3, 4, 5, 6, 7, -1))], () => proto().cast),
  nativeMethod('shape', [], () => Object.getOwnPropertyDescriptor(native.NativeTensor.prototype, 'shape')?.get as AnyFn),
  nativeMethod('nbytes', [], () => Object.getOwnPropertyDescriptor(native.NativeTensor.prototype, 'nbytes')?.get as AnyFn),
  nativeMethod('disposed', [], () => Object.getOwnPropertyDescriptor(native.NativeTensor.prototype, 'disposed')?.get as AnyFn),
  nativeFn('setErrorClasses', [na(obj({ ShapeError: na(fc.constant({ k: 'special', v: 'function' } as Recipe)), DTypeError: na(v(1)) }))], 'setErrorClasses'),
  nativeFn('devices', [], 'devices'),
  nativeFn('buildInfo', [], 'buildInfo'),
  nativeFn('liveBytes', [], 'liveBytes'),
  nativeFn('availableMemory', [], 'availableMemory'),
  nativeFn('cudaStats', [na(vs('cuda:0', 'cuda:3', 'cpu', 'cuda:-1', 'cuda:99999999999'))], 'cudaStats'),
  nativeFn('cudaResetStats', [na(vs('cuda:0', 'cuda:2'))], 'cudaResetStats'),
  nativeFn('cudaSynchronize', [na(vs('cuda:0', 'cpu'))], 'cudaSynchronize'),
  nativeFn('permute', [na(ph(0, 1, 2, 3)), na(ph(6, 7, 8, 9, 22)), na(nNum)], 'permute'),
  nativeFn('permuteBackward', [na(ph(21, 0, 24)), na(ph(22, 23, 6)), na(nNum)], 'permuteBackward'),
  nativeFn('unpermute', [na(ph(21, 11, 0)), na(ph(22, 23, 6)), na(fc.oneof(ph(24, 5), v(null))), na(nNum)], 'unpermute'),
  nativeFn('unpermuteBackward', [na(ph(0, 21)), na(ph(22, 23)), na(fc.oneof(ph(24, 5), v(null))), na(ph(21, 0))], 'unpermuteBackward'),
  nativeFn('groupedGemm', [na(ph(0, 21, 2)), na(ph(10, 26, 4)), na(nSizes)], 'groupedGemm'),
  nativeFn('groupedGemmBackward', [na(ph(11, 0)), na(ph(0, 21)), na(ph(10, 26)), na(nSizes)], 'groupedGemmBackward'),
  nativeFn('loadBalance', [na(ph(25, 0, 4)), na(ph(19, 28, 5)), na(nNum), na(nNum), na(nNum)], 'loadBalance'),
  nativeFn('zLoss', [na(nFloat), na(nNum)], 'zLoss'),
  nativeFn('routerOrthogonality', [na(nFloat), na(nNum), na(vs(0, 1, 2, 3, -1)), na(nSizes)], 'routerOrthogonality'),
  nativeFn('adamwStep', [na(ph(4, 30, 5)), na(ph(30, 4, 0)), na(ph(4, 30)), na(ph(30, 4)), na(trapped(fc.oneof(vs({ lr: 0.1, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 }), obj({ lr: na(nNum), beta1: na(nNum), beta2: na(nNum), eps: na(nNum), weightDecay: na(nNum) })))), na(fc.oneof(vs(1, 2, 3), nNum)), na(vs('cpu', 'cuda:0', 'cuda:x'))], 'adamwStep'),
  nativeFn('quantizeFp8', [na(ph(0, 10, 2, 13, 1, 18)), na(vs('e4m3', 'e5m2', 'e3m4', 1)), na(fc.oneof(vs(1, 128), nNum)), na(vs('cpu', 'cuda:0', 'cuda:x'))], 'quantizeFp8'),
  nativeFn('groupedGemmFp8', [na(ph(13, 0, 12, 2)), na(ph(20, 5, 1, 27)), na(ph(13, 10, 14)), na(ph(26, 10, 5)), na(nSizes), na(vs('cpu', 'cuda:0', 'gpu'))], 'groupedGemmFp8'),
  nativeFn('route', [na(h(0, 1, 2, 3, 25)), na(h(4, 30)), na(nSpec), na(nOpts)], 'route'),
  nativeFn('routeBackward', [na(h(0, 1, 2, 25)), na(h(4, 30)), na(nSpec), na(nOpts), na(h(20, 0, 11))], 'routeBackward'),
  { name: 'native.new NativeMoELayer', args: [na(nSpec), na(nParams), na(nGrads)], native: true, call: (s, p, g) => new native.NativeMoELayer(s as never, p as never, g as never) },
  { name: 'native.new NativeMoELayer (one tensor replaced)', args: [na(nSpec), vs('routerWeight', 'routerBias', 'routerLoad', 'w1', 'w3', 'w2', 'g1', 'shared'), anyNativeArg], native: true,
    call: (s, field, value) => nativeLayer(s, field as string, value) },
  { name: 'native.NativeMoELayer#forward/backward', args: [na(nSpec), na(ph(0, 1, 2, 3, 25)), na(fc.oneof(h(8, 9), v(null), v(null))), na(trapped(fc.oneof({ weight: 3, arbitrary: vs([6], [2, 4], null) }, { weight: 1, arbitrary: fc.oneof(vs([-1, 7], [2 ** 31], [2 ** 32 + 6], [2 ** 31 + 3, 2 ** 31 + 3]), shapeRecipe) }))), na(vs(true, false)), na(vs(true, false)), na(ph(25, 0, 2, 3))],
    native: true,
    call: (s, xx, m, seq, training, check, dy) => {
      const layer = nativeLayer(s);
      disposeDeep((layer.forward as AnyFn)(xx, m, seq, training, check));
      disposeDeep(layer.backward(dy as never));
      layer.endStep();
      return layer.step;
    } },
  { name: 'native.NativeMoELayer# wrong receiver', args: [anyNativeArg, na(vs('forward', 'backward', 'endStep'))], native: true, receiver: native.NativeMoELayer,
    call: (self, name) => ((native.NativeMoELayer.prototype as unknown as Record<string, AnyFn>)[name as string]).call(self, self, null, null, true, false) },
];

/** A native layer built from a (possibly mutated) flat spec, with correctly shaped tensors when the spec allows. */
function nativeLayer(specValue: unknown, replace?: string, replacement?: unknown) {
  const spec = specValue as { hidden: number; groups: { count: number; ffn: number }[]; sharedCount: number; sharedFfn: number; activation: number };
  const size = (n: unknown) => (typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 16 ? n : 1);
  const H = size(spec?.hidden);
  const groups = Array.isArray(spec?.groups) ? spec.groups : [];
  const E = groups.reduce((sum, g) => sum + size(g?.count), 0);
  const made: Tensor[] = [];
  const tensor = (field: string, make: () => Tensor) => {
    if (field === replace) return replacement;
    const t = make();
    made.push(t);
    return t.handle;
  };
  const expert = (count: unknown, ffn: unknown, prefix = '') => ({
    w1: tensor(`${prefix}w1`, () => Tensor.zeros([size(count), size(ffn), H])),
    w3: tensor(`${prefix}w3`, () => Tensor.zeros([size(count), size(ffn), H])),
    w2: tensor(`${prefix}w2`, () => Tensor.zeros([size(count), H, size(ffn)])),
  });
  const params = {
    routerWeight: tensor('routerWeight', () => Tensor.randn([E, H], { seed: 1 })),
    routerBias: tensor('routerBias', () => Tensor.zeros([E])),
    routerLoad: tensor('routerLoad', () => Tensor.from(new Float32Array(E).fill(1 / Math.max(E, 1)), [E])),
    groups: groups.map((g) => expert(g?.count, g?.ffn)),
    shared: replace === 'shared' ? replacement : expert(spec?.sharedCount, spec?.sharedFfn),
  };
  const grads = { routerWeight: tensor('g1', () => Tensor.zeros([E, H])), groups: groups.map((g) => expert(g?.count, g?.ffn, 'g')), shared: expert(spec?.sharedCount, spec?.sharedFfn, 'g') };
  world.owned.push(...made);  // freed with the world: the native layer holds them
  return new native.NativeMoELayer(spec, params as never, grads as never);
}

// ---- the run -----------------------------------------------------------------------------------------

interface Offender { target: string; args: string; error: string; count: number }
type Report = {
  seed: number; calls: number; ok: number; typed: Record<string, number>; nativeCalls: number; systemErrors: number; receiverRejected: number;
  offenders: Offender[]; offenderCount: number; perTarget: Record<string, { calls: number; ok: number }>; ms: number;
};

const ONLY = process.env.MOEKIT_FUZZ_TARGETS ? new RegExp(process.env.MOEKIT_FUZZ_TARGETS) : undefined;
const targets = [...publicTargets, ...nativeTargets].filter((target) => !ONLY || ONLY.test(target.name));
const WORLD_EVERY = 150;
let world: World;

/** CALLS calls drawn from `seed`: the report of one fuzzing run. */
function runFuzz(seed: number): Report {
  const report = emptyReport(seed);
  const offenderIndex = new Map<string, Offender>();
  const started = Date.now();
  const perTarget = Math.ceil(CALLS / targets.length);
  world = new World(seed % 1000);
  let sinceWorld = 0;
  // Targets interleave round-robin (a backward meets the forwards of other calls, a dispose the users
  // of the tensor), each with its own seeded stream of draws.
  const draws = targets.map((target, index) => fc.sample(fc.tuple(...target.args), { seed: seed + index * 7919, numRuns: perTarget }));
  for (let round = 0; round < perTarget; round++) {
    for (let index = 0; index < targets.length; index++) {
      const target = targets[index];
      const recipes = draws[index][round];
      if (sinceWorld++ >= WORLD_EVERY) {
        world.dispose();
        world = new World(report.calls);
        sinceWorld = 0;
      }
      let values: unknown[];
      try {
        values = recipes.map((r) => world.make(r));
      } catch (error) {
        throw new Error(`fuzz harness: materialising ${JSON.stringify(recipes)} failed: ${(error as Error).stack}`);
      }
      const description = `${target.name}(${values.map(show).join(', ')})`;
      if (traceFd >= 0) fs.writeSync(traceFd, `${report.calls} ${description}\n`);
      report.calls++;
      const counts = (report.perTarget[target.name] ??= { calls: 0, ok: 0 });
      counts.calls++;
      if (target.native) report.nativeCalls++;
      try {
        const result = target.call(...values);
        if (!target.live) disposeDeep(result);
        report.ok++;
        counts.ok++;
      } catch (error) {
        const e = error as Error & { code?: unknown };
        if (process.env.MOEKIT_FUZZ_DEBUG === target.name) process.stderr.write(`${description.slice(0, 300)}\n  → ${e?.name}: ${e?.message}\n`);
        if (error instanceof MoekitError) report.typed[error.name] = (report.typed[error.name] ?? 0) + 1;
        else if (target.io && typeof e?.code === 'string' && /^E[A-Z]+$/.test(e.code)) report.systemErrors++;
        else if (target.receiver && !(values[0] instanceof target.receiver)) report.receiverRejected++;
        else {
          report.offenderCount++;
          const message = `${e?.name}: ${e?.message}`.slice(0, 300);
          const key = `${target.name}|${message.replace(/\d+/g, 'N')}`;
          const known = offenderIndex.get(key);
          if (known) known.count++;
          else if (offenderIndex.size < 100) {
            const offender = { target: target.name, args: description.slice(0, 600), error: message, count: 1 };
            offenderIndex.set(key, offender);
            report.offenders.push(offender);
          }
        }
      }
      if (target.name === 'native.setErrorClasses') native.setErrorClasses(errorClasses);
    }
  }
  world.dispose();
  report.ms = Date.now() - started;
  return report;
}

/** Reports of several runs as one (the seed is the first run's). */
function merge(reports: Report[]): Report {
  const out = emptyReport(reports[0]?.seed ?? SEED);
  for (const r of reports) {
    for (const key of ['calls', 'ok', 'nativeCalls', 'systemErrors', 'receiverRejected', 'offenderCount'] as const) out[key] += r[key];
    for (const [name, n] of Object.entries(r.typed)) out.typed[name] = (out.typed[name] ?? 0) + n;
    for (const [name, c] of Object.entries(r.perTarget)) {
      const t = (out.perTarget[name] ??= { calls: 0, ok: 0 });
      t.calls += c.calls;
      t.ok += c.ok;
    }
    out.offenders.push(...r.offenders);
    out.ms = Math.max(out.ms, r.ms);
  }
  return out;
}

function emptyReport(seed: number): Report {
  return { seed, calls: 0, ok: 0, typed: {}, nativeCalls: 0, systemErrors: 0, receiverRejected: 0, offenders: [], offenderCount: 0, perTarget: {}, ms: 0 };
}

/** Worker mode (see the file comment): the merged reports with {workers, terminated, exitCodes}. */
async function runWorkers(): Promise<void> {
  const terminate = Number(process.env.MOEKIT_FUZZ_TERMINATE ?? 0);
  const next = fc.sample(fc.integer({ min: 20, max: 400 }), { seed: SEED, numRuns: WORKERS + 1 });
  const register = path.join(__dirname, 'register.js');
  const reports: Report[] = [];
  const exitCodes: number[] = [];
  let fuzzing = 0;
  let allFuzzing: () => void = () => undefined;
  const allStarted = new Promise<void>((resolve) => { allFuzzing = resolve; });
  const workers = Array.from({ length: WORKERS }, (_, i) => {
    const worker = new Worker(`require(${JSON.stringify(register)}); require(${JSON.stringify(__filename)});`, { eval: true, execArgv: [], workerData: { seed: SEED + i + 1 } });
    // A worker says 'fuzzing' once it runs calls: a terminated one is stopped inside them.
    worker.on('message', (message: Report | 'fuzzing') => {
      if (message !== 'fuzzing') return void reports.push(message);
      if (++fuzzing === WORKERS) allFuzzing();
      if (i < terminate) setTimeout(() => void worker.terminate(), next[i]);
    });
    return new Promise<void>((resolve, reject) => {
      worker.on('error', reject);
      worker.on('exit', (code) => { exitCodes.push(code); resolve(); });
    });
  });
  if (process.env.MOEKIT_FUZZ_EXIT === '1') {
    await allStarted;
    await new Promise((resolve) => setTimeout(resolve, next[WORKERS]));
    process.exit(0);
  }
  await Promise.all(workers);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ ...merge(reports), workers: WORKERS, terminated: terminate, exitCodes })}\n`);
}

if (!isMainThread) {
  parentPort?.postMessage('fuzzing');
  const report = runFuzz(SEED);
  fs.rmSync(tmp, { recursive: true, force: true });
  parentPort?.postMessage(report);
} else if (WORKERS > 0) {
  runWorkers().catch((error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(3);
  });
} else {
  const report = runFuzz(SEED);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify(report)}\n`);
}
