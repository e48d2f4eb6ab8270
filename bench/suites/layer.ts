/**
 * layer: MoELayer forward + backward tokens/s and GFLOP/s on the reference shapes, with the
 * PyTorch eager peer (bench/peer/torch_moe.py) on the same shapes and thread count when
 * `python3 -c "import torch"` works.
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
  torch: string;
  threads: number;
}

function runPeer(s: LayerShape, threads: number, runs: number): PeerResult | string {
  const probe = spawnSync('python3', ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) return 'PyTorch not available (python3 -c "import torch" failed)';
  const script = path.join(packageRoot(), 'bench', 'peer', 'torch_moe.py');
  const run = spawnSync('python3', [script, JSON.stringify({ ...s, threads, runs })], { encoding: 'utf8', maxBuffer: 1 << 20 });
  if (run.status !== 0) return `PyTorch peer failed: ${run.stderr.trim().split('\n').pop()}`;
  return JSON.parse(run.stdout.trim().split('\n').pop() as string) as PeerResult;
}

export function layerSuite(quick: boolean, threads: number): { rows: Row[]; notes: string[] } {
  const runs = quick ? 2 : 5;
  const progress = new Progress(LAYER_SHAPES.length * 2, 'layer');
  const notes: string[] = [];
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
    const timing = measure(() => {
      const out = layer.forward(x);
      const { dx } = layer.backward(dy);
      dx.dispose();
      out.y.dispose();
      layer.zeroGrad();
    }, { runs });
    progress.tick(`${s.name} moekit`);
    const peer = runPeer(s, threads, runs);
    progress.tick(`${s.name} PyTorch`);
    const ours = (s.tokens * 1000) / timing.medianMs;
    const row: Row = {
      shape: s.name,
      'T,H,E,k,F': `${s.tokens},${s.hidden},${s.experts},${s.topK},${s.ffn}`,
      'moekit ms': timing.medianMs,
      'moekit tok/s': Math.round(ours),
      'moekit GFLOP/s': (3 * layerForwardFlops(s)) / (timing.medianMs * 1e6),
    };
    if (typeof peer === 'string') {
      notes.push(peer);
      row['PyTorch tok/s'] = 'n/a';
      row.ratio = 'n/a';
    } else {
      row['PyTorch ms'] = peer.medianMs;
      row['PyTorch tok/s'] = Math.round((s.tokens * 1000) / peer.medianMs);
      row.ratio = `${(peer.medianMs / timing.medianMs).toFixed(2)}×`;
      notes.push(`peer: PyTorch ${peer.torch} eager, ${peer.threads} threads`);
    }
    rows.push(row);
    layer.dispose();
  }
  progress.finish();
  return { rows, notes: [...new Set(notes)] };
}
