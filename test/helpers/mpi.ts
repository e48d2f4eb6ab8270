/**
 * Running children under mpirun (the dist, split and parallel-layer suites): the as-root
 * environment Open MPI needs, the command line, each rank's "<TAG> {json}" report line parsed, and
 * the guard that stands in for an MPI suite when mpirun is absent (skipped, with the reason in its
 * name, outside CI; failing in CI, which installs Open MPI).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { tail } from './child';

export const MPI_ENV = { OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1' };

const HAVE_MPIRUN = spawnSync('mpirun', ['--version'], { encoding: 'utf8' }).status === 0;
const REGISTER = path.join(__dirname, '..', 'children', 'register.js');

export interface MpiRun<R> {
  status: number | null;
  stdout: string;
  stderr: string;
  reports: R[];
}

/** `node -r register.js test/children/<script>.ts <args>`: a TypeScript child as a command. */
export function nodeChild(script: string, ...args: string[]): string[] {
  return [process.execPath, '-r', REGISTER, path.join(__dirname, '..', 'children', `${script}.ts`), ...args];
}

/** Runs argv (mpirun or not) with MPI_ENV added, each "<tag> {json}" line of stdout parsed. */
export function runReporting<R>(argv: string[], tag: string, timeoutMs: number, env: Record<string, string> = {}): MpiRun<R> {
  const run = spawnSync(argv[0], argv.slice(1), {
    encoding: 'utf8',
    env: { ...process.env, ...MPI_ENV, ...env },
    timeout: timeoutMs,
    maxBuffer: 16 * 1024 * 1024,
  });
  if (run.error) throw run.error;
  const prefix = `${tag} `;
  const reports = (run.stdout ?? '')
    .split('\n')
    .filter((line) => line.startsWith(prefix))
    .map((line) => JSON.parse(line.slice(prefix.length)) as R);
  return { status: run.status, stdout: run.stdout ?? '', stderr: run.stderr ?? '', reports };
}

/** `mpirun --allow-run-as-root --oversubscribe -np <np> <command>`, reports parsed. */
export function mpirun<R>(np: number, command: string[], tag: string, timeoutMs: number, env: Record<string, string> = {}): MpiRun<R> {
  return runReporting<R>(['mpirun', '--allow-run-as-root', '--oversubscribe', '-np', String(np), ...command], tag, timeoutMs, env);
}

/** Exit status and the tails of both streams, for a failed run's message. */
export function explain(run: MpiRun<unknown>): string {
  return `exit ${run.status}\n--- stdout\n${tail(run.stdout)}\n--- stderr\n${tail(run.stderr)}`;
}

/**
 * Call first inside an MPI describe block: false (after registering the guard test) when mpirun
 * is absent, so the block returns; true otherwise.
 */
export function mpirunAvailable(): boolean {
  if (HAVE_MPIRUN) return true;
  (process.env.CI ? test : test.skip)('mpirun is installed (skipped: mpirun not found; apt-get install openmpi-bin libopenmpi-dev)', () => {
    throw new Error('mpirun not found on PATH; CI installs Open MPI (.ci/run)');
  });
  return false;
}
