/**
 * The published package installs from its prebuilt binary on a machine without cmake:
 * npm run prebuild → npm pack → npm install <tarball> in an empty folder whose PATH holds only
 * node and sh → require('moekit').devices(). Slow (a full native build and an npm install); it
 * needs the npm registry for moekit's own dependencies.
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..');

function npmCli(): string {
  if (process.env.npm_execpath && fs.existsSync(process.env.npm_execpath)) return process.env.npm_execpath;
  const npm = execFileSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).trim();
  return fs.realpathSync(npm);
}

test('npm pack + npm install <tarball> loads the prebuilt binary with cmake unreachable', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-pack-'));
  try {
    const npm = npmCli();
    execFileSync(process.execPath, [npm, 'run', 'prebuild'], { cwd: root, stdio: 'pipe' });
    const packed = execFileSync(process.execPath, [npm, 'pack', '--pack-destination', tmp], { cwd: root, encoding: 'utf8' });
    const tarball = path.join(tmp, packed.trim().split('\n').pop() as string);
    expect(fs.existsSync(tarball)).toBe(true);

    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    fs.copyFileSync(process.execPath, path.join(bin, 'node'));
    fs.chmodSync(path.join(bin, 'node'), 0o755);
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh'));  // npm runs lifecycle scripts with `sh`
    const consumer = path.join(tmp, 'consumer');
    fs.mkdirSync(consumer);
    fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    // the caller's environment (CA bundles, HOME) without npm's own variables, and a PATH of node alone
    const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
    env.PATH = bin;

    expect(spawnSync('/bin/sh', ['-c', 'command -v cmake'], { env }).status).not.toBe(0);
    const install = spawnSync(path.join(bin, 'node'), [npm, 'install', '--no-audit', '--no-fund', tarball], { cwd: consumer, env, encoding: 'utf8' });
    expect(install.stderr + install.stdout).not.toMatch(/building from source failed/);
    expect({ status: install.status, output: install.status === 0 ? '' : install.stderr }).toEqual({ status: 0, output: '' });
    expect(fs.existsSync(path.join(consumer, 'node_modules', 'moekit', 'build'))).toBe(false);
    // npm 11 runs a dependency's install script only once the user approves it; run ours as an
    // approved install would: it must settle on the prebuilt binary without looking for cmake
    const hook = spawnSync(path.join(bin, 'node'), [path.join('node_modules', 'moekit', 'scripts', 'install.js')], { cwd: consumer, env, encoding: 'utf8' });
    expect({ status: hook.status, stderr: hook.stderr }).toEqual({ status: 0, stderr: '' });
    expect(hook.stdout).toMatch(/moekit: using prebuilt prebuilds\/linux-/);

    const run = spawnSync(path.join(bin, 'node'), ['-e', "process.stdout.write(JSON.stringify(require('moekit').devices()))"], {
      cwd: consumer,
      env,
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(JSON.parse(run.stdout)[0]).toEqual({ kind: 'cpu' });

    // the binary needs no CUDA library at run time (cudart is linked statically)
    const ldd = execFileSync('ldd', [path.join(consumer, 'node_modules', 'moekit', 'prebuilds', `linux-${os.arch()}`, 'moekit.node')], { encoding: 'utf8' });
    expect(ldd).not.toMatch(/libcuda|libcudart|not found/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}, 600_000);
