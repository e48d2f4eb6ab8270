/** ExpertMonitor (DESIGN §3 "Monitoring"): metrics on hand-made stats, Prometheus, JSONL, the SVG heatmap. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Registry } from 'prom-client';
import { ArgumentError, ExpertStats, FormatError, MoELayer, ShapeError } from '../lib';
import { viridis } from '../lib/heatmap';
import { ExpertMonitor, loadImbalance, mergeExpertStats } from '../lib/monitor';
import { expectTypedError } from './helpers/expect-error';
import { uniformTensor } from './helpers/random';
import { allElements, parseXml, XmlElement } from './helpers/xml';

const K = 2;

/** Hand-made stats: f = counts/(T·k) with k = 2; the balance metrics are given, not derived. */
function stats(counts: number[], o: Partial<{ tokens: number; accepted: number[]; dropped: number[]; flops: number[]; maxVio: number; cv: number; entropy: number }> = {}): ExpertStats {
  const tokens = o.tokens ?? counts.reduce((a, b) => a + b, 0) / K;
  return {
    tokens,
    counts: Int32Array.from(counts),
    accepted: Int32Array.from(o.accepted ?? counts),
    dropped: Int32Array.from(o.dropped ?? counts.map(() => 0)),
    f: Float64Array.from(counts, (c) => c / (tokens * K)),
    P: Float64Array.from(counts, () => 1 / counts.length),
    maxVio: o.maxVio ?? 0,
    cv: o.cv ?? 0,
    entropy: o.entropy ?? 1,
    flops: o.flops ?? counts.map((c) => 10 * c),
    sharedFlops: 7,
  };
}

function tmpDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-monitor-'));
}

describe('metrics', () => {
  test('EWMA: the first observation sets it, each later one mixes in with weight α (exact on hand-made stats)', () => {
    const monitor = new ExpertMonitor({ ewmaAlpha: 0.5 });
    monitor.observe('moe', stats([4, 2, 2, 0], { accepted: [4, 2, 1, 0], dropped: [0, 0, 1, 0], flops: [40, 20, 20, 0], maxVio: 1, cv: 0.5, entropy: 0.75 }));
    let s = monitor.summary('moe');
    expect(s.ewma.loadShare).toEqual([0.5, 0.25, 0.25, 0]);
    expect(s.ewma.activationRate).toEqual([1, 0.5, 0.5, 0]);
    expect(s.ewma.acceptedRate).toEqual([1, 0.5, 0.25, 0]);
    expect(s.ewma.dropRate).toEqual([0, 0, 0.25, 0]);
    expect(s.ewma.flopsShare).toEqual([0.5, 0.25, 0.25, 0]);
    expect([s.ewma.maxVio, s.ewma.cv, s.ewma.entropy]).toEqual([1, 0.5, 0.75]);

    monitor.observe('moe', stats([0, 8, 4, 4], { flops: [0, 80, 40, 40], maxVio: 0.5, cv: 0.25, entropy: 1 }));
    s = monitor.summary('moe');
    expect(s.ewma.loadShare).toEqual([0.25, 0.375, 0.25, 0.125]);
    expect(s.ewma.activationRate).toEqual([0.5, 0.75, 0.5, 0.25]);
    expect(s.ewma.acceptedRate).toEqual([0.5, 0.75, 0.375, 0.25]);
    expect(s.ewma.dropRate).toEqual([0, 0, 0.125, 0]);
    expect(s.ewma.flopsShare).toEqual([0.25, 0.375, 0.25, 0.125]);
    expect([s.ewma.maxVio, s.ewma.cv, s.ewma.entropy]).toEqual([0.75, 0.375, 0.875]);
    expect(s.totals).toEqual({ selected: [4, 10, 6, 4], accepted: [4, 10, 5, 4], dropped: [0, 0, 1, 0] });
    expect([s.observations, s.tokens, s.step, s.experts]).toEqual([2, 12, 2, 4]);
  });

  test('an expert is dead after deadWindow observations without a selection (fewer while fewer were made)', () => {
    const monitor = new ExpertMonitor({ deadWindow: 2 });
    const dead = (counts: number[]) => {
      monitor.observe('moe', stats(counts));
      return monitor.summary('moe').deadExperts;
    };
    expect(dead([1, 1, 0, 0])).toEqual([2, 3]);
    expect(dead([1, 0, 1, 0])).toEqual([3]);
    expect(dead([1, 0, 1, 0])).toEqual([1, 3]);
    expect(dead([0, 0, 0, 2])).toEqual([1]);
    expect(dead([0, 1, 0, 1])).toEqual([0, 2]);
  });

  test('the history keeps the last historyLength observations; EWMA and totals cover them all', () => {
    const monitor = new ExpertMonitor({ historyLength: 3 });
    for (let i = 1; i <= 5; i++) monitor.observe('moe', stats([i, 0, 0, i]));
    expect(monitor.history('moe').map((r) => r.step)).toEqual([3, 4, 5]);
    expect(monitor.history('moe').map((r) => r.stats.counts[0])).toEqual([3, 4, 5]);
    expect(monitor.summary('moe').totals.selected).toEqual([15, 0, 0, 15]);
    expect(monitor.summary('moe').observations).toBe(5);
  });

  test('steps default to the previous step + 1; a given step must exceed the previous one', () => {
    const monitor = new ExpertMonitor();
    monitor.observe('moe', stats([1, 1]), 10);
    monitor.observe('moe', stats([1, 1]));
    expect(monitor.history('moe').map((r) => r.step)).toEqual([10, 11]);
    expectTypedError(() => monitor.observe('moe', stats([1, 1]), 11), ArgumentError, /step must be an integer in \[12, /);
  });

  test('the monitor keeps copies: changing the observed stats afterwards changes nothing', () => {
    const monitor = new ExpertMonitor();
    const s = stats([2, 2]);
    monitor.observe('moe', s);
    s.counts[0] = 100;
    expect(monitor.history('moe')[0].stats.counts[0]).toBe(2);
  });

  test('loadImbalance: maxVio, cv and normalised entropy of counts [3, 1, 0, 0]; all 0 for no selection', () => {
    const r = loadImbalance([3, 1, 0, 0]);
    expect(r.maxVio).toBe(2);
    expect(r.cv).toBeCloseTo(Math.sqrt(1.5), 15);
    expect(r.entropy).toBeCloseTo(-(0.75 * Math.log(0.75) + 0.25 * Math.log(0.25)) / Math.log(4), 15);
    expect(loadImbalance([0, 0, 0])).toEqual({ maxVio: 0, cv: 0, entropy: 0 });
  });

  test('loadImbalance agrees with the ExpertStats of a real forward', () => {
    const layer = new MoELayer({ hidden: 6, experts: [{ name: 'e', count: 5, ffnHidden: 4 }], activation: 'relu', router: { topK: 2 }, seed: 1 });
    const { stats: s } = layer.forward(uniformTensor([37, 6], 9));
    const r = loadImbalance(s.counts);
    expect(r.maxVio).toBeCloseTo(s.maxVio, 12);
    expect(r.cv).toBeCloseTo(s.cv, 12);
    expect(r.entropy).toBeCloseTo(s.entropy, 12);
  });

  test('mergeExpertStats sums counts and FLOPs, token-weights f and P, and recomputes the balance metrics', () => {
    const a = stats([4, 0, 0, 0], { tokens: 2, maxVio: 3 });
    const b = stats([0, 4, 2, 2], { tokens: 4, dropped: [0, 1, 0, 0], maxVio: 1 });
    b.P = Float64Array.from([0, 0.5, 0.25, 0.25]);
    const m = mergeExpertStats([a, b]);
    expect(Array.from(m.counts)).toEqual([4, 4, 2, 2]);
    expect(Array.from(m.dropped)).toEqual([0, 1, 0, 0]);
    expect(m.tokens).toBe(6);
    expect(Array.from(m.f)).toEqual([4 / 12, 4 / 12, 2 / 12, 2 / 12]);
    expect(Array.from(m.P)).toEqual([(0.25 * 2) / 6, (0.25 * 2 + 0.5 * 4) / 6, (0.25 * 2 + 0.25 * 4) / 6, (0.25 * 2 + 0.25 * 4) / 6]);
    expect(m.flops).toEqual([40, 40, 20, 20]);
    expect(m.sharedFlops).toBe(14);
    expect(m.maxVio).toBeCloseTo(4 / 3 - 1, 15);
    expect(m.entropy).toBeCloseTo(loadImbalance([4, 4, 2, 2]).entropy, 15);
  });

  test('misuse throws typed errors that name the argument', () => {
    const monitor = new ExpertMonitor();
    monitor.observe('moe', stats([1, 1, 0, 0]));
    expectTypedError(() => monitor.observe('moe', stats([1, 1])), ShapeError, /layer "moe" must cover 4 experts, got 2/);
    expectTypedError(() => monitor.observe('', stats([1, 1])), ArgumentError, /layer must be a non-empty string/);
    expectTypedError(() => monitor.observe('x', { ...stats([1, 1]), counts: [1, 1] } as unknown as ExpertStats), ArgumentError, /stats\.counts must be an Int32Array/);
    expectTypedError(() => monitor.observe('x', { ...stats([1, 1]), f: new Float64Array(3) }), ShapeError, /stats\.f must have 2 entries/);
    expectTypedError(() => monitor.summary('nope'), ArgumentError, /layer must be an observed layer \("moe"\), got string "nope"/);
    expectTypedError(() => new ExpertMonitor({ ewmaAlpha: 0 }), ArgumentError, /opts\.ewmaAlpha must be a number in \(0, 1\]/);
    expectTypedError(() => new ExpertMonitor({ histroyLength: 3 } as never), ArgumentError, /opts\.histroyLength is not an option/);
    expectTypedError(() => mergeExpertStats([]), ArgumentError, /stats must be a non-empty array/);
    expectTypedError(() => monitor.renderHeatmap(path.join(tmpDir(), 'x.png')), ArgumentError, /path must end with \.svg/);
  });
});

/** Samples of a Prometheus text exposition (format 0.0.4), with each metric family's TYPE. */
function parseExposition(text: string): { types: Map<string, string>; samples: { name: string; labels: Record<string, string>; value: number }[] } {
  const types = new Map<string, string>();
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ')) continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const labelText = m[2] ?? '';
    const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let l: RegExpExecArray | null;
    while ((l = label.exec(labelText))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    if (label.lastIndex !== 0 && label.lastIndex !== labelText.length) throw new Error(`bad labels: ${line}`);
    if (labelText !== '' && Object.keys(labels).length === 0) throw new Error(`bad labels: ${line}`);
    samples.push({ name: m[1], labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return { types, samples };
}

describe('Prometheus export', () => {
  function observed(): ExpertMonitor {
    const monitor = new ExpertMonitor({ ewmaAlpha: 0.5, deadWindow: 2 });
    monitor.observe('moe1', stats([4, 2, 2, 0], { maxVio: 1, cv: 0.5, entropy: 0.75 }));
    monitor.observe('moe "two"', stats([1, 1, 1, 1, 0, 0], { maxVio: 0.5 }));
    monitor.observe('moe1', stats([0, 8, 4, 4], { dropped: [0, 2, 0, 0], maxVio: 0.5, cv: 0.25, entropy: 1 }));
    return monitor;
  }

  test('the text exposition parses back to the monitor\'s EWMAs, totals and dead experts, one sample per layer × expert', async () => {
    const monitor = observed();
    const registry = new Registry();
    monitor.toPrometheus(registry);
    const { types, samples } = parseExposition(await registry.metrics());
    const value = (name: string, labels: Record<string, string>) => {
      const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      expect(found).toHaveLength(1);
      return found[0].value;
    };
    expect(types.get('moekit_expert_load_share')).toBe('gauge');
    expect(types.get('moekit_expert_selected_total')).toBe('counter');
    expect(types.get('moekit_layer_step_max_vio')).toBe('histogram');
    for (const layer of monitor.layers()) {
      const s = monitor.summary(layer);
      expect(samples.filter((x) => x.name === 'moekit_expert_load_share' && x.labels.layer === layer)).toHaveLength(s.experts);
      for (let e = 0; e < s.experts; e++) {
        const labels = { layer, expert: String(e) };
        expect(value('moekit_expert_load_share', labels)).toBe(s.ewma.loadShare[e]);
        expect(value('moekit_expert_activation_rate', labels)).toBe(s.ewma.activationRate[e]);
        expect(value('moekit_expert_drop_rate', labels)).toBe(s.ewma.dropRate[e]);
        expect(value('moekit_expert_flops_share', labels)).toBe(s.ewma.flopsShare[e]);
        expect(value('moekit_expert_selected_total', labels)).toBe(s.totals.selected[e]);
        expect(value('moekit_expert_dropped_total', labels)).toBe(s.totals.dropped[e]);
        expect(value('moekit_expert_dead', labels)).toBe(s.deadExperts.includes(e) ? 1 : 0);
      }
      expect(value('moekit_layer_max_vio', { layer })).toBe(s.ewma.maxVio);
      expect(value('moekit_layer_dead_experts', { layer })).toBe(s.deadExperts.length);
      expect(value('moekit_layer_observations_total', { layer })).toBe(s.observations);
      expect(value('moekit_layer_tokens_total', { layer })).toBe(s.tokens);
    }
    expect(value('moekit_expert_load_share', { layer: 'moe1', expert: '1' })).toBe(0.375);
    expect(value('moekit_layer_max_vio', { layer: 'moe1' })).toBe(0.75);
    expect(value('moekit_expert_dead', { layer: 'moe "two"', expert: '5' })).toBe(1);
    expect(value('moekit_layer_step_max_vio_count', { layer: 'moe1' })).toBe(2);
    expect(value('moekit_layer_step_max_vio_sum', { layer: 'moe1' })).toBe(1.5);
    expect(value('moekit_layer_step_max_vio_bucket', { layer: 'moe1', le: '0.5' })).toBe(1);
    expect(value('moekit_layer_step_max_vio_bucket', { layer: 'moe1', le: '1' })).toBe(2);
    expect(value('moekit_layer_step_max_vio_bucket', { layer: 'moe1', le: '+Inf' })).toBe(2);
  });

  test('gauges follow later observations; histograms start from the history and take every later observation', async () => {
    const monitor = observed();
    const registry = new Registry();
    monitor.toPrometheus(registry, { prefix: 'train_' });
    monitor.observe('moe1', stats([2, 2, 2, 2], { maxVio: 0 }));
    const { samples } = parseExposition(await registry.metrics());
    const one = (name: string, labels: Record<string, string>) =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
    expect(one('train_layer_observations_total', { layer: 'moe1' })).toBe(3);
    expect(one('train_layer_step_max_vio_count', { layer: 'moe1' })).toBe(3);
    expect(one('train_layer_step_max_vio_bucket', { layer: 'moe1', le: '0.05' })).toBe(1);
    expect(one('train_expert_load_share', { layer: 'moe1', expert: '0' })).toBe(0.5 * 0.25 + 0.5 * 0.25);
    expect(samples.some((s) => s.name.startsWith('moekit_'))).toBe(false);
  });

  test('exporting twice into one registry with one prefix throws ArgumentError', () => {
    const monitor = observed();
    const registry = new Registry();
    monitor.toPrometheus(registry);
    expectTypedError(() => monitor.toPrometheus(registry), ArgumentError, /registry already holds moekit_expert_load_share/);
    expectTypedError(() => monitor.toPrometheus({} as Registry), ArgumentError, /registry must be a prom-client Registry/);
    expectTypedError(() => monitor.toPrometheus(new Registry(), { prefix: '1x' }), ArgumentError, /opts\.prefix must be a Prometheus metric-name prefix/);
  });
});

describe('JSONL', () => {
  test('writeJsonl → readJsonl round-trips the history and the summaries; lines follow observation order', () => {
    const monitor = new ExpertMonitor({ ewmaAlpha: 0.3 });
    monitor.observe('a', stats([3, 1, 0, 0], { maxVio: 2, cv: 1.2247448713915889, entropy: 0.4056390622295664 }));
    monitor.observe('b', stats([1, 1], { dropped: [0, 1] }));
    monitor.observe('a', stats([1, 1, 1, 1]), 7);
    monitor.observe('b', { ...stats([2, 0]), P: Float64Array.from([0.1, 0.9]) });
    const file = path.join(tmpDir(), 'sub', 'stats.jsonl');
    monitor.writeJsonl(file);
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.layer, l.step])).toEqual([['a', 1], ['b', 1], ['a', 7], ['b', 2]]);
    expect(lines[0]).toEqual({
      layer: 'a', step: 1, tokens: 2, counts: [3, 1, 0, 0], accepted: [3, 1, 0, 0], dropped: [0, 0, 0, 0],
      f: [0.75, 0.25, 0, 0], P: [0.25, 0.25, 0.25, 0.25], maxVio: 2, cv: 1.2247448713915889, entropy: 0.4056390622295664,
      flops: [30, 10, 0, 0], sharedFlops: 7,
    });
    const back = ExpertMonitor.readJsonl(file, { ewmaAlpha: 0.3 });
    expect(back.layers()).toEqual(['a', 'b']);
    for (const layer of ['a', 'b']) {
      expect(back.history(layer)).toEqual(monitor.history(layer));
      expect(back.summary(layer)).toEqual(monitor.summary(layer));
    }
    const again = path.join(tmpDir(), 'again.jsonl');
    back.writeJsonl(again);
    expect(fs.readFileSync(again, 'utf8')).toBe(text);
  });

  test('readJsonl names the line of a malformed record', () => {
    const file = path.join(tmpDir(), 'bad.jsonl');
    fs.writeFileSync(file, '{"layer":"a","step":1,"tokens":1,"counts":[1],"accepted":[1],"dropped":[0],"f":[1],"P":[1],"maxVio":0,"cv":0,"entropy":1,"flops":[1],"sharedFlops":0}\n{oops\n');
    expectTypedError(() => ExpertMonitor.readJsonl(file), FormatError, /bad\.jsonl:2: not JSON/);
  });
});

describe('heatmap', () => {
  function cells(panel: XmlElement): XmlElement[] {
    return allElements(panel).filter((e) => e.name === 'rect' && e.attributes.class === 'cell');
  }

  test('the SVG is well-formed XML with one cell per expert × step in each layer\'s panel, coloured by load share', () => {
    const monitor = new ExpertMonitor();
    const shares: number[][] = [];
    for (let step = 1; step <= 5; step++) {
      const counts = [2 * step, 0, 10 - step, 4];
      monitor.observe('<moe&1>', stats(counts));
      shares.push(counts.map((c) => c / counts.reduce((a, b) => a + b, 0)));
      if (step <= 3) monitor.observe('moe2', stats([1, 1, 1, 1, 1, 1 + step]), 10 * step);
    }
    const dir = tmpDir();
    const out = monitor.renderHeatmap(path.join(dir, 'load.svg'), { title: 'Load & balance' });
    expect(out).toEqual({ svg: path.join(dir, 'load.svg'), html: path.join(dir, 'load.html') });
    const svg = parseXml(fs.readFileSync(out.svg, 'utf8'));
    expect(svg.name).toBe('svg');
    expect(svg.attributes.xmlns).toBe('http://www.w3.org/2000/svg');
    const panels = allElements(svg).filter((e) => e.name === 'g' && e.attributes.class === 'panel');
    expect(panels.map((p) => p.attributes['data-layer'])).toEqual(['<moe&1>', 'moe2']);

    const first = cells(panels[0]);
    expect(first).toHaveLength(4 * 5);
    expect(new Set(first.map((c) => `${c.attributes['data-expert']}@${c.attributes['data-step']}`)).size).toBe(20);
    for (const c of first) {
      const share = shares[Number(c.attributes['data-step']) - 1][Number(c.attributes['data-expert'])];
      expect(Number(c.attributes['data-share'])).toBeCloseTo(share, 3);
      expect(c.attributes.fill).toBe(viridis((share * 4) / 2));
    }
    expect(first.find((c) => c.attributes['data-expert'] === '1')?.attributes.fill).toBe('#440154');
    const second = cells(panels[1]);
    expect(second).toHaveLength(6 * 3);
    expect([...new Set(second.map((c) => c.attributes['data-step']))]).toEqual(['10', '20', '30']);

    const everything = fs.readFileSync(out.svg, 'utf8') + fs.readFileSync(out.html, 'utf8');
    expect(everything.replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:|src=|<link|@import/);
  });

  test('the XML check has teeth: unclosed or mismatched tags, duplicate attributes, bare & and trailing text are rejected', () => {
    for (const bad of ['<svg><g></svg>', '<svg><g></g>', '<a b="1" b="2"/>', '<a>&</a>', '<a>&nbsp;</a>', '<a b=1/>', '<a/>x', '<a/><b/>', '<a b="<"/>']) {
      expect(() => parseXml(bad)).toThrow(/XML not well-formed/);
    }
    expect(parseXml('<?xml version="1.0" encoding="UTF-8"?>\n<!-- c --><a x=\'&lt;&#65;&#x42;\'>t<![CDATA[<&>]]><b/></a>\n')).toEqual({
      name: 'a', attributes: { x: '<AB' }, children: ['t', '<&>', { name: 'b', attributes: {}, children: [] }],
    });
  });

  test('the HTML page holds the same SVG inline, after a heading and an explanation', () => {
    const monitor = new ExpertMonitor();
    monitor.observe('moe', stats([1, 3]));
    const out = monitor.renderHeatmap(path.join(tmpDir(), 'h.svg'), { title: 'T <1>' });
    const html = fs.readFileSync(out.html, 'utf8');
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).toContain('<h1>T &lt;1&gt;</h1>');
    expect(html).toContain(fs.readFileSync(out.svg, 'utf8').replace(/^<\?xml[^>]*>\n/, ''));
  });

  test('opts.last draws only the last observations; viridis spans #440154 (idle) to #fde725 (≥ 2/E)', () => {
    const monitor = new ExpertMonitor();
    for (let i = 0; i < 10; i++) monitor.observe('moe', stats([1, 1, 0, 2]));
    const out = monitor.renderHeatmap(path.join(tmpDir(), 'l.svg'), { last: 4 });
    const svg = parseXml(fs.readFileSync(out.svg, 'utf8'));
    const steps = cells(svg).map((c) => Number(c.attributes['data-step']));
    expect([...new Set(steps)]).toEqual([7, 8, 9, 10]);
    expect([viridis(0), viridis(1), viridis(2), viridis(-1)]).toEqual(['#440154', '#fde725', '#fde725', '#440154']);
  });
});
