// Child of test/emulated-addon.test.ts: loads moekit as the environment says and reports what
// the loaded binary is, its devices, and that tensors and the layer still work with it.
import { MoELayer, Tensor, buildInfo, devices } from '../../lib';

const layer = new MoELayer({ hidden: 4, experts: [{ name: 'e', count: 2, ffnHidden: 3 }], activation: 'swiglu', router: { topK: 1 }, seed: 1 });
const y = layer.forward(Tensor.randn([3, 4], { seed: 2 })).y.toArray();
process.stdout.write(`${JSON.stringify({ devices: devices(), build: buildInfo(), y: Array.from(y) })}\n`);
