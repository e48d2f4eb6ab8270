/**
 * DESIGN §4, memory: a request the machine cannot hold is refused with a typed error before
 * anything is committed (zero-filled storage would otherwise be ended by the OOM killer), an
 * allocation failure names the shape and the bytes, and a layer whose construction fails frees
 * what it allocated at once. The address-space cases run node under `ulimit -v` (not under the
 * sanitizer run of scripts/sanitize.sh: ASan reserves terabytes of address space).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { MoEConfigError, MoELayer, availableMemory, liveBytes } from '../lib';

describe('memory limits', () => {
  test('a layer larger than the available memory throws MoEConfigError before it allocates anything', () => {
    // Sized from this machine: 1.5 × availableMemory(), every tensor under 2^31 elements.
    const hidden = 4, count = 64;
    const ffnHidden = Math.ceil((1.5 * availableMemory()) / (4 * 2 * 3 * count * hidden));
    expect(count * ffnHidden * hidden).toBeLessThan(2 ** 31);
    const before = liveBytes();
    let error: unknown;
    try {
      new MoELayer({ hidden, experts: [{ name: 'e', count, ffnHidden }], activation: 'swiglu', router: { topK: 2 } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(MoEConfigError);
    expect((error as Error).message).toMatch(/^config: the layer's parameters, gradients and state need \d+ bytes of host memory .* are available; nothing was allocated$/);
    expect(liveBytes()).toBe(before);
  });

  /** Runs `code` (TypeScript, with lib/ importable as ../lib) in node under `ulimit -v` of `kib`. */
  function underLimit(code: string, kib: number) {
    const register = path.join(__dirname, 'children', 'register.js');
    const script = `require(${JSON.stringify(register)}); const lib = require(${JSON.stringify(path.join(__dirname, '..', 'lib'))}); ${code}`;
    return spawnSync('bash', ['-c', `ulimit -v ${kib} && exec "${process.execPath}" -e "$0"`, script], { encoding: 'utf8', timeout: 60_000 });
  }

  test('an allocation the process cannot make throws ArgumentError naming the shape and the bytes (address space limited to 2 GiB)', () => {
    const run = underLimit(`try { lib.Tensor.zeros([1, 2 ** 30]); console.log('allocated'); } catch (e) { console.log(JSON.stringify({ name: e.name, message: e.message })); }`, 2 * 1024 * 1024);
    expect([run.signal, run.status]).toEqual([null, 0]);
    const report = JSON.parse(run.stdout.trim().split('\n').pop() as string) as { name: string; message: string };
    expect(report.name).toBe('ArgumentError');
    expect(report.message).toBe('shape [1, 1073741824]: expected a f32 tensor that fits in host memory, got one of 4294967296 bytes (the allocation failed: out of memory)');
  });

  test('a layer whose construction fails part-way frees what it allocated at once (liveBytes back to its value before)', () => {
    // router.weight is allocated first; experts.e.w1 [8, 786432, 64] (1.5 GiB) then fails under a
    // 2 GiB address space (the whole layer, 9 GiB, passes the available-memory check).
    const run = underLimit(`
      const before = lib.liveBytes();
      let error = {};
      try { new lib.MoELayer({ hidden: 64, experts: [{ name: 'e', count: 8, ffnHidden: 786432 }], activation: 'swiglu', router: { topK: 2 } }); } catch (e) { error = e; }
      console.log(JSON.stringify({ name: error.name, message: error.message, before, after: lib.liveBytes() }));`, 2 * 1024 * 1024);
    expect([run.signal, run.status]).toEqual([null, 0]);
    const report = JSON.parse(run.stdout.trim().split('\n').pop() as string) as { name: string; message: string; before: number; after: number };
    expect(report.name).toBe('ArgumentError');
    expect(report.message).toMatch(/^shape \[8, 786432, 64\]: .* 1610612736 bytes \(the allocation failed: out of memory\)$/);
    expect(report.after).toBe(report.before);
  });
});
