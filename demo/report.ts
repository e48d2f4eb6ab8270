/**
 * What the demo measures and prints: per-expert load lines, domain × expert usage, and the
 * expert–domain specialisation metrics (mutual information, top-expert share).
 */
import { ExpertStats } from '../lib';
import { DOMAINS } from './data';
import { EXPERTS, TOP_K } from './model';

const BARS = '▁▂▃▄▅▆▇█';

/**
 * One layer's load: a bar per expert (full height = twice the uniform share 1/E), the share of
 * the batch's top-k selections in percent (stats.counts, before capacity), and maxVio.
 */
export function loadLine(label: string, stats: ExpertStats): string {
  const total = stats.counts.reduce((a, b) => a + b, 0);
  const shares = Array.from(stats.counts, (c) => c / total);
  const bars = shares.map((s) => BARS[Math.min(BARS.length - 1, Math.floor((s * EXPERTS / 2) * BARS.length))]).join('');
  const percents = shares.map((s) => (100 * s).toFixed(0).padStart(3)).join('');
  return `${label} ${bars} ${percents} %   maxVio ${stats.maxVio.toFixed(2)}  entropy ${stats.entropy.toFixed(3)}`;
}

/** counts[d][e]: how many of domain d's top-k selections went to expert e. */
export function usageCounts(domains: Int32Array, experts: Int32Array): number[][] {
  const counts = Array.from({ length: DOMAINS }, () => new Array<number>(EXPERTS).fill(0));
  domains.forEach((d, t) => {
    for (let j = 0; j < TOP_K; j++) counts[d][experts[t * TOP_K + j]]++;
  });
  return counts;
}

/**
 * I(expert; domain) in bits, over the joint distribution of (domain of the token, expert it
 * selected) given by `counts`: Σ p(d,e) log2 p(d,e) / (p(d) p(e)). 0 when the experts a token
 * picks say nothing of its domain; log2(DOMAINS) = 2 bits at most here.
 */
export function mutualInformation(counts: number[][]): number {
  const total = counts.flat().reduce((a, b) => a + b, 0);
  const pd = counts.map((row) => row.reduce((a, b) => a + b, 0) / total);
  const pe = counts[0].map((_, e) => counts.reduce((n, row) => n + row[e], 0) / total);
  let mi = 0;
  counts.forEach((row, d) =>
    row.forEach((c, e) => {
      if (c > 0) mi += (c / total) * Math.log2(c / total / (pd[d] * pe[e]));
    }),
  );
  return mi;
}

/** Per domain: the share of its selections that land on its `top` most used experts (uniform routing: top/E). */
export function topExpertShare(counts: number[][], top = TOP_K): number[] {
  return counts.map((row) => {
    const total = row.reduce((a, b) => a + b, 0);
    return [...row].sort((a, b) => b - a).slice(0, top).reduce((a, b) => a + b, 0) / total;
  });
}

/** Rows = domains, columns = experts: share (%) of each domain's top-k selections that go to the expert. */
export function usageTable(counts: number[][]): string {
  const header = `domain ${Array.from({ length: EXPERTS }, (_, e) => `e${e}`.padStart(5)).join('')}`;
  const rows = counts.map((row, d) => {
    const total = row.reduce((a, b) => a + b, 0);
    return `${String(d).padStart(6)} ${row.map((c) => (100 * c / total).toFixed(0).padStart(5)).join('')}`;
  });
  return [header, ...rows].join('\n');
}
