/**
 * layer: MoELayer forward + backward tokens/s and GFLOP/s on the reference shapes, with the
 * PyTorch eager peer (bench/peer/torch_moe.py) on the same shapes and thread count when
 * `python3 -c "import torch"` works.
 *
 * The two sides take turns: per shape, `rounds` rounds of (moekit × runs, then one PyTorch process
 * × runs), so a drift in the machine's speed during the suite reaches both sides alike. Each side's
 * figure is the median of all its timed runs; the ratio is PyTorch median / moekit median, and the
 * per-round ratios are printed beside it to show the spread.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { MoELayer, Tensor } from '../../lib';
import { packageRoot } from '../../lib/native';
import { measure } from '../measure';
import { Progress } from '../progress';
import { LAYER_SHAPES, LayerShape, layerForwardFlops, scaled } from '../shapes';
import { Row } from '../table';

interface PeerResult {
  medianMs: number;
  timesMs: number[];
  torch: string;
  threads: number;
}

function peerAvailable(): string | null {
  const probe = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  return probe.status === 0 ? null : 'PyTorch not available (python3 -c "import torch" failed)';
}

function runPeer(s: LayerShape, threads: number, runs: number): PeerResult | string {
  const script = path.join(packageRoot(), 'bench', 'peer', 'torch_moe.py');
  const run = spawnSync('python3', [script, JSON.stringify({ ...s, threads, runs })], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) return `PyTorch peer failed: ${run.stderr.trim().split('\n').pop()}`;
  return JSON.parse(run.stdout.trim().split('\n').pop() as string) as PeerResult;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

export function layerSuite(quick: boolean, threads: number): { rows: Row[]; notes: string[] } {
  const runs = quick ? 2 : 5;
  const rounds = quick ? 1 : 3;
  const missingPeer = peerAvailable();
  const progress = new Progress(LAYER_SHAPES.length * rounds * 2, 'layer');
  const notes: string[] = missingPeer ? [missingPeer] : [];
  const rows: Row[] = [];
  for (const shape of LAYER_SHAPES) {
    const s = scaled(shape, quick);
    const layer = new MoELayer({
      hidden: s.hidden,
      experts: [{ name: 'e', count: s.experts, ffnHidden: s.ffn }],
      activation: 'swiglu',
      router: { topK: s.topK, score: 'softmax' },
      seed: 1,
    });
    const x = Tensor.randn([s.tokens, s.hidden], { seed: 2 });
    const dy = Tensor.randn([s.tokens, s.hidden], { seed: 3 });
    const ours: number[] = [];
    const theirs: number[] = [];
    const roundRatios: number[] = [];
    let peerFailure: string | null = missingPeer;
    for (let round = 0; round < rounds; round++) {
      const timing = measure(() => {
        const out = layer.forward(x);
        const { dx } = layer.backward(dy);
        dx.dispose();
        out.y.dispose();
        layer.zeroGrad();
      }, { runs });
      ours.push(...timing.timesMs);
      progress.tick(`${s.name} moekit, round ${round + 1}`);
      if (!peerFailure) {
        const peer = runPeer(s, threads, runs);
        if (typeof peer === 'string') peerFailure = peer;
        else {
          theirs.push(...peer.timesMs);
          roundRatios.push(peer.medianMs / timing.medianMs);
          notes.push(`peer: PyTorch ${peer.torch} eager, ${peer.threads} threads`);
        }
      }
      progress.tick(`${s.name} PyTorch, round ${round + 1}`);
    }
    const oursMs = median(ours);
    const row: Row = {
      shape: s.name,
      'T,H,E,k,F': `${s.tokens},${s.hidden},${s.experts},${s.topK},${s.ffn}`,
      'moekit ms': oursMs,
      'moekit tok/s': Math.round((s.tokens * 1000) / oursMs),
      'moekit GFLOP/s': (3 * layerForwardFlops(s)) / (oursMs * 1e6),
    };
    if (peerFailure) {
      notes.push(peerFailure);
      row['PyTorch tok/s'] = 'n/a';
      row.ratio = 'n/a';
    } else {
      const theirsMs = median(theirs);
      row['PyTorch ms'] = theirsMs;
      row['PyTorch tok/s'] = Math.round((s.tokens * 1000) / theirsMs);
      row.ratio = `${(theirsMs / oursMs).toFixed(2)}×`;
      row['per-round ratios'] = roundRatios.map((r) => `${r.toFixed(2)}×`).join(' ');
    }
    rows.push(row);
    layer.dispose();
  }
  progress.finish();
  return { rows, notes: [...new Set(notes)] };
}
