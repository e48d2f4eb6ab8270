/**
 * ExpertMonitor (DESIGN §2, §3 "Monitoring"): follows each MoE layer's ExpertStats over training.
 *
 *   monitor.observe('moe1', out.stats)      // after every forward (or every merged window, below)
 *   monitor.summary('moe1')                 // EWMAs, running totals, dead experts
 *   monitor.toPrometheus(registry)          // prom-client gauges, counters, histograms {layer, expert}
 *   monitor.writeJsonl('stats.jsonl')       // one line per kept observation; readJsonl() reads it back
 *   monitor.renderHeatmap('load.svg')       // expert × step SVG (colour = load share) + load.html
 *
 * Vocabulary, per observation of a layer with E experts and T tokens (c = stats.counts, R6):
 *   load share_i      = c_i / Σc            (= f_i for top-k routing; sums to 1)
 *   activation rate_i = c_i / T             (share of tokens that chose expert i; sums to k)
 *   accepted / drop rate_i = accepted_i / T, dropped_i / T   (after capacity, C2–C5)
 *   FLOPs share_i     = flops_i / Σ flops   (routed experts only; shared experts excluded)
 *   maxVio, cv, entropy as in ExpertStats (computed from c).
 * EWMA: e ← (1−α)·e + α·x, set to x by the layer's first observation (α = ewmaAlpha).
 * Dead expert: no selection in the last min(deadWindow, observations) observations of its layer.
 * The history keeps the last `historyLength` observations per layer (the oldest leave first);
 * EWMAs, totals and dead experts cover every observation since construction.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { ArgumentError, FormatError, ShapeError } from './errors';
import { heatmapHtml, heatmapSvg, HeatmapPanel } from './heatmap';
import type { ExpertStats } from './layer';
import { checkInteger, checkKeys, checkObject, describe } from './validate';

export interface ExpertMonitorOptions {
  /** EWMA rate α in (0, 1]. Default 0.1. */
  ewmaAlpha?: number;
  /** Observations kept per layer for history(), writeJsonl() and the heatmap. Default 1000. */
  historyLength?: number;
  /** Observations without a selection after which an expert counts as dead. Default 100. */
  deadWindow?: number;
}

/** One kept observation: the step it was recorded at and a copy of its stats. */
export interface MonitorRecord {
  layer: string;
  step: number;
  stats: ExpertStats;
}

/** Per-expert rates of one observation (see the vocabulary above). */
export interface StepRates {
  loadShare: number[];
  activationRate: number[];
  acceptedRate: number[];
  dropRate: number[];
  flopsShare: number[];
}

export interface LayerSummary {
  layer: string;
  experts: number;
  observations: number;
  tokens: number;
  /** Step of the latest observation. */
  step: number;
  ewma: StepRates & { maxVio: number; cv: number; entropy: number };
  /** Sums over every observation. */
  totals: { selected: number[]; accepted: number[]; dropped: number[] };
  /** Indices of the dead experts, ascending. */
  deadExperts: number[];
}

export interface PrometheusOptions {
  /** Prefix of every metric name. Default 'moekit_'. */
  prefix?: string;
}

export interface HeatmapOptions {
  /** Heading of the HTML page and the SVG. Default 'Expert load'. */
  title?: string;
  /** Layers to draw, in order. Default: every layer, in order of first observation. */
  layers?: string[];
  /** Draw only the last `last` kept observations of each layer. Default: all of them. */
  last?: number;
}

/** Histogram buckets of the per-observation balance metrics. */
const MAX_VIO_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8];
const CV_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 4];
const ENTROPY_BUCKETS = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1];

/** maxVio = max(c)/mean(c) − 1, cv = std(c)/mean(c), entropy = −Σ p log p / log E (p = c/Σc); all 0 when Σc = 0. */
export function loadImbalance(counts: ArrayLike<number>): { maxVio: number; cv: number; entropy: number } {
  if (!Array.isArray(counts) && !ArrayBuffer.isView(counts)) throw new ArgumentError(`counts must be an array of numbers, got ${describe(counts)}`);
  const E = counts.length;
  let total = 0;
  let max = 0;
  for (let e = 0; e < E; e++) {
    if (typeof counts[e] !== 'number') throw new ArgumentError(`counts[${e}] must be a number, got ${describe(counts[e])}`);
    total += counts[e];
    max = Math.max(max, counts[e]);
  }
  if (total <= 0) return { maxVio: 0, cv: 0, entropy: 0 };
  const mean = total / E;
  let variance = 0;
  let entropy = 0;
  for (let e = 0; e < E; e++) {
    variance += (counts[e] - mean) ** 2 / E;
    const p = counts[e] / total;
    if (p > 0) entropy -= p * Math.log(p);
  }
  return { maxVio: max / mean - 1, cv: Math.sqrt(variance) / mean, entropy: E > 1 ? entropy / Math.log(E) : 1 };
}

/**
 * The stats of several forwards of one layer taken as one batch (a gradient-accumulation window,
 * the global batch of L2): counts, accepted, dropped and FLOPs add up; f and P are token-weighted
 * means (f_i = Σcounts_i / (ΣT·k)); maxVio, cv and entropy are recomputed from the summed counts.
 */
export function mergeExpertStats(list: readonly ExpertStats[]): ExpertStats {
  if (!Array.isArray(list) || list.length === 0) throw new ArgumentError(`stats must be a non-empty array of ExpertStats, got ${describe(list)}`);
  list.forEach((s, i) => checkStats(s, `stats[${i}]`));
  const E = list[0].counts.length;
  list.forEach((s, i) => {
    if (s.counts.length !== E) throw new ShapeError(`stats[${i}] has ${s.counts.length} experts, stats[0] has ${E}`);
  });
  const tokens = list.reduce((n, s) => n + s.tokens, 0);
  const sum = (pick: (s: ExpertStats) => ArrayLike<number>, e: number) => list.reduce((n, s) => n + pick(s)[e], 0);
  const weighted = (pick: (s: ExpertStats) => ArrayLike<number>, e: number) =>
    tokens > 0 ? list.reduce((n, s) => n + pick(s)[e] * s.tokens, 0) / tokens : 0;
  const counts = Int32Array.from({ length: E }, (_, e) => sum((s) => s.counts, e));
  return {
    tokens,
    counts,
    accepted: Int32Array.from({ length: E }, (_, e) => sum((s) => s.accepted, e)),
    dropped: Int32Array.from({ length: E }, (_, e) => sum((s) => s.dropped, e)),
    f: Float64Array.from({ length: E }, (_, e) => weighted((s) => s.f, e)),
    P: Float64Array.from({ length: E }, (_, e) => weighted((s) => s.P, e)),
    ...loadImbalance(counts),
    flops: Array.from({ length: E }, (_, e) => sum((s) => s.flops, e)),
    sharedFlops: list.reduce((n, s) => n + s.sharedFlops, 0),
  };
}

/** The per-expert rates of one observation. */
export function stepRates(stats: ExpertStats): StepRates {
  checkStats(stats, 'stats');
  const E = stats.counts.length;
  const selected = stats.counts.reduce((a, b) => a + b, 0);
  const flops = stats.flops.reduce((a, b) => a + b, 0);
  const per = (v: ArrayLike<number>, d: number) => Array.from({ length: E }, (_, e) => (d > 0 ? v[e] / d : 0));
  return {
    loadShare: per(stats.counts, selected),
    activationRate: per(stats.counts, stats.tokens),
    acceptedRate: per(stats.accepted, stats.tokens),
    dropRate: per(stats.dropped, stats.tokens),
    flopsShare: per(stats.flops, flops),
  };
}

interface LayerState {
  experts: number;
  observations: number;
  tokens: number;
  step: number;
  ewma: LayerSummary['ewma'];
  totals: LayerSummary['totals'];
  /** Observation index (0-based) of each expert's latest selection, −1 before the first. */
  lastSelected: number[];
  history: KeptRecord[];
}

/** A history entry with its place among the observations of every layer. */
interface KeptRecord extends MonitorRecord {
  seq: number;
}

interface Attached {
  maxVio: Histogram<'layer'>;
  cv: Histogram<'layer'>;
  entropy: Histogram<'layer'>;
}

export class ExpertMonitor {
  readonly ewmaAlpha: number;
  readonly historyLength: number;
  readonly deadWindow: number;
  #layers = new Map<string, LayerState>();
  /** Histograms of registries this monitor was exported to; fed by every later observe(). */
  #attached: Attached[] = [];
  #observations = 0;

  constructor(opts: ExpertMonitorOptions = {}) {
    const o = checkObject(opts, 'opts');
    checkKeys(o, 'opts', ['ewmaAlpha', 'historyLength', 'deadWindow']);
    const alpha = o.ewmaAlpha ?? 0.1;
    if (typeof alpha !== 'number' || !(alpha > 0 && alpha <= 1)) throw new ArgumentError(`opts.ewmaAlpha must be a number in (0, 1], got ${describe(alpha)}`);
    this.ewmaAlpha = alpha;
    this.historyLength = checkInteger(o.historyLength ?? 1000, 'opts.historyLength', 1);
    this.deadWindow = checkInteger(o.deadWindow ?? 100, 'opts.deadWindow', 1);
  }

  /**
   * Records one observation of `layer`. `step` defaults to the previous step + 1 (the first is 1);
   * a given step must exceed the layer's previous one. The stats are copied.
   */
  observe(layer: string, stats: ExpertStats, step?: number): void {
    if (typeof layer !== 'string' || layer.length === 0) throw new ArgumentError(`layer must be a non-empty string, got ${describe(layer)}`);
    checkStats(stats, 'stats');
    const E = stats.counts.length;
    let state = this.#layers.get(layer);
    if (state && state.experts !== E) throw new ShapeError(`stats of layer "${layer}" must cover ${state.experts} experts, got ${E}`);
    const previous = state?.step ?? 0;
    const at = step === undefined ? previous + 1 : checkInteger(step, 'step', state ? previous + 1 : 0);
    if (!state) {
      state = {
        experts: E,
        observations: 0,
        tokens: 0,
        step: at,
        ewma: { loadShare: [], activationRate: [], acceptedRate: [], dropRate: [], flopsShare: [], maxVio: 0, cv: 0, entropy: 0 },
        totals: { selected: new Array<number>(E).fill(0), accepted: new Array<number>(E).fill(0), dropped: new Array<number>(E).fill(0) },
        lastSelected: new Array<number>(E).fill(-1),
        history: [],
      };
      this.#layers.set(layer, state);
    }
    const copy = copyStats(stats);
    const rates = stepRates(copy);
    const first = state.observations === 0;
    const a = this.ewmaAlpha;
    const mix = (old: number, x: number) => (first ? x : (1 - a) * old + a * x);
    for (const key of Object.keys(rates) as (keyof StepRates)[]) {
      state.ewma[key] = rates[key].map((x, e) => mix(state.ewma[key][e], x));
    }
    state.ewma.maxVio = mix(state.ewma.maxVio, copy.maxVio);
    state.ewma.cv = mix(state.ewma.cv, copy.cv);
    state.ewma.entropy = mix(state.ewma.entropy, copy.entropy);
    for (let e = 0; e < E; e++) {
      state.totals.selected[e] += copy.counts[e];
      state.totals.accepted[e] += copy.accepted[e];
      state.totals.dropped[e] += copy.dropped[e];
      if (copy.counts[e] > 0) state.lastSelected[e] = state.observations;
    }
    state.observations++;
    state.tokens += copy.tokens;
    state.step = at;
    state.history.push({ layer, step: at, stats: copy, seq: this.#observations++ });
    if (state.history.length > this.historyLength) state.history.shift();
    for (const h of this.#attached) feedHistograms(h, layer, copy);
  }

  /** Layer names in order of first observation. */
  layers(): string[] {
    return [...this.#layers.keys()];
  }

  summary(layer: string): LayerSummary {
    const s = this.#state(layer);
    const window = Math.min(this.deadWindow, s.observations);
    return {
      layer,
      experts: s.experts,
      observations: s.observations,
      tokens: s.tokens,
      step: s.step,
      ewma: {
        loadShare: [...s.ewma.loadShare],
        activationRate: [...s.ewma.activationRate],
        acceptedRate: [...s.ewma.acceptedRate],
        dropRate: [...s.ewma.dropRate],
        flopsShare: [...s.ewma.flopsShare],
        maxVio: s.ewma.maxVio,
        cv: s.ewma.cv,
        entropy: s.ewma.entropy,
      },
      totals: { selected: [...s.totals.selected], accepted: [...s.totals.accepted], dropped: [...s.totals.dropped] },
      deadExperts: s.lastSelected.flatMap((last, e) => (last < s.observations - window ? [e] : [])),
    };
  }

  /** The kept observations of `layer`, oldest first (copies). */
  history(layer: string): MonitorRecord[] {
    return this.#state(layer).history.map((r) => ({ layer: r.layer, step: r.step, stats: copyStats(r.stats) }));
  }

  /**
   * Registers in `registry` (label `layer`, and `expert` = index as a string):
   *   gauges <prefix>expert_{load_share,activation_rate,accepted_rate,drop_rate,flops_share} (EWMA),
   *   <prefix>expert_dead (1 = dead), <prefix>layer_{max_vio,cv,entropy} (EWMA), <prefix>layer_dead_experts;
   *   counters <prefix>expert_{selected,accepted,dropped}_total, <prefix>layer_{observations,tokens}_total;
   *   histograms <prefix>layer_step_{max_vio,cv,entropy} of the per-observation values.
   * Gauges and counters read the monitor when the registry is scraped. The histograms start with
   * the observations in the history now and take every later one.
   */
  toPrometheus(registry: Registry, opts: PrometheusOptions = {}): void {
    if (typeof registry !== 'object' || registry === null || typeof (registry as Registry).registerMetric !== 'function') {
      throw new ArgumentError(`registry must be a prom-client Registry, got ${describe(registry)}`);
    }
    const o = checkObject(opts, 'opts');
    checkKeys(o, 'opts', ['prefix']);
    const prefix = o.prefix ?? 'moekit_';
    if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$|^$/.test(prefix)) {
      throw new ArgumentError(`opts.prefix must be a Prometheus metric-name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*), got ${describe(prefix)}`);
    }
    const taken = ['expert_load_share', 'layer_step_max_vio'].map((n) => prefix + n).find((n) => registry.getSingleMetric(n));
    if (taken) throw new ArgumentError(`registry already holds ${taken}: the monitor was exported to it before (pass another opts.prefix)`);
    const registers = [registry];
    const monitor = this;
    const perExpert = (name: string, help: string, value: (s: LayerSummary, e: number) => number) =>
      new Gauge({
        name: prefix + name,
        help,
        labelNames: ['layer', 'expert'] as const,
        registers,
        collect() {
          this.reset();
          for (const layer of monitor.layers()) {
            const s = monitor.summary(layer);
            for (let e = 0; e < s.experts; e++) this.set({ layer, expert: String(e) }, value(s, e));
          }
        },
      });
    const perExpertTotal = (name: string, help: string, value: (s: LayerSummary, e: number) => number) =>
      new Counter({
        name: prefix + name,
        help,
        labelNames: ['layer', 'expert'] as const,
        registers,
        collect() {
          this.reset();
          for (const layer of monitor.layers()) {
            const s = monitor.summary(layer);
            for (let e = 0; e < s.experts; e++) this.inc({ layer, expert: String(e) }, value(s, e));
          }
        },
      });
    const perLayer = (name: string, help: string, value: (s: LayerSummary) => number) =>
      new Gauge({
        name: prefix + name,
        help,
        labelNames: ['layer'] as const,
        registers,
        collect() {
          this.reset();
          for (const layer of monitor.layers()) this.set({ layer }, value(monitor.summary(layer)));
        },
      });
    const perLayerTotal = (name: string, help: string, value: (s: LayerSummary) => number) =>
      new Counter({
        name: prefix + name,
        help,
        labelNames: ['layer'] as const,
        registers,
        collect() {
          this.reset();
          for (const layer of monitor.layers()) this.inc({ layer }, value(monitor.summary(layer)));
        },
      });
    perExpert('expert_load_share', 'EWMA of the expert\'s share of the top-k selections, c_i / sum(c)', (s, e) => s.ewma.loadShare[e]);
    perExpert('expert_activation_rate', 'EWMA of the share of tokens that select the expert, c_i / T', (s, e) => s.ewma.activationRate[e]);
    perExpert('expert_accepted_rate', 'EWMA of accepted assignments per token after capacity, accepted_i / T', (s, e) => s.ewma.acceptedRate[e]);
    perExpert('expert_drop_rate', 'EWMA of dropped assignments per token, dropped_i / T', (s, e) => s.ewma.dropRate[e]);
    perExpert('expert_flops_share', 'EWMA of the expert\'s share of the routed experts\' forward FLOPs', (s, e) => s.ewma.flopsShare[e]);
    perExpert('expert_dead', '1 when the expert got no selection in the dead window, else 0', (s, e) => (s.deadExperts.includes(e) ? 1 : 0));
    perExpertTotal('expert_selected_total', 'Top-k selections of the expert (before capacity)', (s, e) => s.totals.selected[e]);
    perExpertTotal('expert_accepted_total', 'Assignments the expert computed (after capacity)', (s, e) => s.totals.accepted[e]);
    perExpertTotal('expert_dropped_total', 'Assignments dropped at the expert by capacity', (s, e) => s.totals.dropped[e]);
    perLayer('layer_max_vio', 'EWMA of max(c)/mean(c) - 1', (s) => s.ewma.maxVio);
    perLayer('layer_cv', 'EWMA of std(c)/mean(c)', (s) => s.ewma.cv);
    perLayer('layer_entropy', 'EWMA of the normalised entropy of the load', (s) => s.ewma.entropy);
    perLayer('layer_dead_experts', 'Experts with no selection in the dead window', (s) => s.deadExperts.length);
    perLayerTotal('layer_observations_total', 'Observations of the layer', (s) => s.observations);
    perLayerTotal('layer_tokens_total', 'Tokens seen by the layer', (s) => s.tokens);
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name: prefix + name, help, labelNames: ['layer'] as const, buckets, registers });
    const attached: Attached = {
      maxVio: histogram('layer_step_max_vio', 'max(c)/mean(c) - 1 of each observation', MAX_VIO_BUCKETS),
      cv: histogram('layer_step_cv', 'std(c)/mean(c) of each observation', CV_BUCKETS),
      entropy: histogram('layer_step_entropy', 'Normalised load entropy of each observation', ENTROPY_BUCKETS),
    };
    for (const [layer, state] of this.#layers) for (const r of state.history) feedHistograms(attached, layer, r.stats);
    this.#attached.push(attached);
  }

  /**
   * Writes the kept observations of every layer to `path`, one JSON object a line in order of
   * observation: {layer, step, tokens, counts, accepted, dropped, f, P, maxVio, cv, entropy, flops, sharedFlops}.
   */
  writeJsonl(file: string): void {
    checkPath(file, 'path');
    const records = [...this.#layers.values()].flatMap((s) => s.history).sort((a, b) => a.seq - b.seq);
    const lines = records.map((r) => JSON.stringify({ layer: r.layer, step: r.step, ...plainStats(r.stats) }));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, lines.map((l) => l + '\n').join(''));
  }

  /** A monitor that has observed every line of a writeJsonl() file, in order. */
  static readJsonl(file: string, opts: ExpertMonitorOptions = {}): ExpertMonitor {
    checkPath(file, 'path');
    const monitor = new ExpertMonitor(opts);
    fs.readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        throw new FormatError(`${file}:${i + 1}: not JSON (${(error as Error).message})`);
      }
      const { layer, step, ...rest } = checkObject(value, `${file}:${i + 1}`);
      const stats = rest as unknown as Record<string, number[]>;
      if (!['counts', 'accepted', 'dropped', 'f', 'P', 'flops'].every((k) => Array.isArray(stats[k]))) {
        throw new FormatError(`${file}:${i + 1}: expected counts, accepted, dropped, f, P and flops arrays`);
      }
      monitor.observe(layer as string, {
        ...(rest as unknown as ExpertStats),
        counts: Int32Array.from(stats.counts),
        accepted: Int32Array.from(stats.accepted),
        dropped: Int32Array.from(stats.dropped),
        f: Float64Array.from(stats.f),
        P: Float64Array.from(stats.P),
      }, step as number);
    });
    return monitor;
  }

  /**
   * Writes `path` (.svg): one panel per layer, a row per expert and a column per kept
   * observation, each cell coloured by the expert's load share (c_i / Σc); and beside it the
   * same name with .html: a page holding the SVG, a legend and a read-out of the cell under the
   * pointer. Both are self-contained (no external resources). Returns the two paths.
   */
  renderHeatmap(file: string, opts: HeatmapOptions = {}): { svg: string; html: string } {
    checkPath(file, 'path');
    if (!file.endsWith('.svg')) throw new ArgumentError(`path must end with .svg (the HTML page goes beside it), got ${describe(file)}`);
    const o = checkObject(opts, 'opts');
    checkKeys(o, 'opts', ['title', 'layers', 'last']);
    const last = o.last === undefined ? this.historyLength : checkInteger(o.last, 'opts.last', 1);
    const title = o.title ?? 'Expert load';
    if (typeof title !== 'string') throw new ArgumentError(`opts.title must be a string, got ${describe(title)}`);
    const names = o.layers ?? this.layers();
    if (!Array.isArray(names)) throw new ArgumentError(`opts.layers must be an array of layer names, got ${describe(names)}`);
    const panels: HeatmapPanel[] = names.map((name: unknown) => {
      const state = this.#state(name as string);
      const drawn = state.history.slice(-last);
      return {
        layer: name as string,
        experts: state.experts,
        steps: drawn.map((r) => r.step),
        share: drawn.map((r) => stepRates(r.stats).loadShare),
      };
    });
    const svg = heatmapSvg(panels, title);
    const html = file.slice(0, -'.svg'.length) + '.html';
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, svg);
    fs.writeFileSync(html, heatmapHtml(svg, title, panels));
    return { svg: file, html };
  }

  #state(layer: string): LayerState {
    const state = typeof layer === 'string' ? this.#layers.get(layer) : undefined;
    if (!state) throw new ArgumentError(`layer must be an observed layer (${this.layers().map((l) => `"${l}"`).join(', ') || 'none yet'}), got ${describe(layer)}`);
    return state;
  }
}

function checkPath(file: unknown, name: string): void {
  if (typeof file !== 'string' || file.length === 0) throw new ArgumentError(`${name} must be a non-empty string, got ${describe(file)}`);
}

/** Checks that `stats` has the ExpertStats fields with per-expert arrays of one length. */
function checkStats(stats: unknown, name: string): void {
  const s = checkObject(stats, name);
  for (const key of ['tokens', 'maxVio', 'cv', 'entropy', 'sharedFlops']) {
    if (typeof s[key] !== 'number' || !Number.isFinite(s[key])) throw new ArgumentError(`${name}.${key} must be a finite number, got ${describe(s[key])}`);
  }
  if (!(s.counts instanceof Int32Array)) throw new ArgumentError(`${name}.counts must be an Int32Array, got ${describe(s.counts)}`);
  const E = s.counts.length;
  if (E === 0) throw new ShapeError(`${name}.counts must have one entry per expert, got 0`);
  for (const key of ['accepted', 'dropped', 'f', 'P', 'flops']) {
    const v = s[key] as ArrayLike<number> | undefined;
    if (!(Array.isArray(v) || ArrayBuffer.isView(v))) throw new ArgumentError(`${name}.${key} must be an array, got ${describe(v)}`);
    if ((v as ArrayLike<number>).length !== E) throw new ShapeError(`${name}.${key} must have ${E} entries (one per expert), got ${(v as ArrayLike<number>).length}`);
  }
}

function copyStats(s: ExpertStats): ExpertStats {
  return {
    tokens: s.tokens,
    counts: Int32Array.from(s.counts),
    accepted: Int32Array.from(s.accepted),
    dropped: Int32Array.from(s.dropped),
    f: Float64Array.from(s.f),
    P: Float64Array.from(s.P),
    maxVio: s.maxVio,
    cv: s.cv,
    entropy: s.entropy,
    flops: Array.from(s.flops),
    sharedFlops: s.sharedFlops,
  };
}

/** ExpertStats with plain arrays, as written to JSON. */
function plainStats(s: ExpertStats): Record<string, number | number[]> {
  return {
    tokens: s.tokens,
    counts: Array.from(s.counts),
    accepted: Array.from(s.accepted),
    dropped: Array.from(s.dropped),
    f: Array.from(s.f),
    P: Array.from(s.P),
    maxVio: s.maxVio,
    cv: s.cv,
    entropy: s.entropy,
    flops: Array.from(s.flops),
    sharedFlops: s.sharedFlops,
  };
}

function feedHistograms(h: Attached, layer: string, stats: ExpertStats): void {
  h.maxVio.observe({ layer }, stats.maxVio);
  h.cv.observe({ layer }, stats.cv);
  h.entropy.observe({ layer }, stats.entropy);
}
