import { spawnSync } from 'child_process';
import * as path from 'path';

const REGISTER = path.join(__dirname, '..', 'children', 'register.js');

export interface ChildRun<R> {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** The JSON object the child printed as its last line of stdout (undefined when it printed none). */
  report: R | undefined;
  ms: number;
}

/**
 * Runs test/children/<script>.ts in a fresh node (TypeScript through register.js) with `env` added
 * to this process's environment (so a sanitizer run's LD_PRELOAD and MOEKIT_ADDON_PATH carry over).
 */
export function runChild<R>(script: string, opts: { env?: Record<string, string>; nodeArgs?: string[]; args?: string[]; timeoutMs?: number } = {}): ChildRun<R> {
  const started = Date.now();
  const run = spawnSync(
    process.execPath,
    [...(opts.nodeArgs ?? []), '-r', REGISTER, path.join(__dirname, '..', 'children', `${script}.ts`), ...(opts.args ?? [])],
    { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 240_000, maxBuffer: 64 * 1024 * 1024 },
  );
  const lines = (run.stdout ?? '').trim().split('\n');
  let report: R | undefined;
  try {
    report = JSON.parse(lines[lines.length - 1]) as R;
  } catch {
    report = undefined;
  }
  return { status: run.status, signal: run.signal, stderr: run.stderr ?? '', report, ms: Date.now() - started };
}

/** The last `n` lines of a child's stderr, for failure messages. */
export function tail(text: string, n = 40): string {
  return text.trim().split('\n').slice(-n).join('\n');
}
