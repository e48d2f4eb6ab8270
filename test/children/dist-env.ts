/**
 * What dist.init({backend: 'local'}) and dist.ncclUniqueId() do under this process's environment
 * (MOEKIT_COMM_TIMEOUT_MS, MOEKIT_NCCL_PATH), run by test/dist.test.ts: jest's sandboxed
 * process.env does not reach native getenv, a child's environment does. Prints one JSON line.
 */
import { dist } from '../../lib';

function outcome(call: () => number): { value?: number; name?: string; message?: string } {
  try {
    return { value: call() };
  } catch (error) {
    return { name: (error as Error).name, message: (error as Error).message };
  }
}

const init = outcome(() => dist.init({ backend: 'local' }).timeoutMs);
const nccl = outcome(() => dist.ncclUniqueId().length);
process.stdout.write(`${JSON.stringify({ init, nccl })}\n`);
