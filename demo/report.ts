/** Text the demo prints: per-expert load lines and the domain × expert usage table. */
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

/** Rows = domains, columns = experts: share (%) of each domain's top-k selections that go to the expert. */
export function usageTable(domains: Int32Array, experts: Int32Array): string {
  const counts = Array.from({ length: DOMAINS }, () => new Array<number>(EXPERTS).fill(0));
  domains.forEach((d, t) => {
    for (let j = 0; j < TOP_K; j++) counts[d][experts[t * TOP_K + j]]++;
  });
  const header = `domain ${Array.from({ length: EXPERTS }, (_, e) => `e${e}`.padStart(5)).join('')}`;
  const rows = counts.map((row, d) => {
    const total = row.reduce((a, b) => a + b, 0);
    return `${String(d).padStart(6)} ${row.map((c) => (100 * c / total).toFixed(0).padStart(5)).join('')}`;
  });
  return [header, ...rows].join('\n');
}
