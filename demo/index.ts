/**
 * npm run demo: a small real job on the CPU. Loads the golden case softmax_top2 shipped with the
 * tests, prints what it holds, and round-trips it through safetensors in a temp folder.
 * (The MoE training demo replaces this once the CPU layer lands.)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { devices, loadSafetensors, saveSafetensors } from '../lib';
import { packageRoot } from '../lib/native';

function stats(values: ArrayLike<number>): string {
  let sum = 0;
  let sq = 0;
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    sum += values[i];
    sq += values[i] * values[i];
    min = Math.min(min, values[i]);
    max = Math.max(max, values[i]);
  }
  const mean = sum / values.length;
  return `mean ${mean.toFixed(4)}  std ${Math.sqrt(sq / values.length - mean * mean).toFixed(4)}  min ${min.toFixed(4)}  max ${max.toFixed(4)}`;
}

const file = path.join(packageRoot(), 'test', 'fixtures', 'golden', 'softmax_top2.safetensors');
console.log(`devices: ${devices().map((d) => (d.kind === 'cpu' ? 'cpu' : `cuda:${d.index} ${d.name}`)).join(', ')}`);
const { tensors, metadata } = loadSafetensors(file);
console.log(`${path.basename(file)}: config ${metadata.config}`);
for (const [name, t] of Object.entries(tensors)) {
  console.log(`  ${name.padEnd(28)} ${t.dtype.padEnd(4)} [${t.shape.join(', ')}]`.padEnd(60) + stats(t.toArray()));
}
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-demo-')), 'roundtrip.safetensors');
saveSafetensors(out, tensors, metadata);
const again = loadSafetensors(out);
const same = Object.keys(tensors).every((name) => Buffer.compare(Buffer.from(again.tensors[name].view().buffer), Buffer.from(tensors[name].view().buffer)) === 0);
console.log(`round trip through ${out}: ${same ? 'identical' : 'DIFFERENT'}`);
