#!/usr/bin/env node
// npm install hook. Order:
//   1. a prebuilt binary (prebuilds/<platform>-<arch>/, node-gyp-build's layout) that loads in a
//      child process → nothing to build;
//   2. otherwise (or with --build-from-source / npm_config_build_from_source=true) build from
//      source with cmake-js, which needs cmake and a C++17 compiler (nvcc optional).
'use strict';
const { spawnSync } = require('child_process');
const path = require('path');

const root = path.join(__dirname, '..');
const fromSource = process.env.npm_config_build_from_source === 'true' || process.argv.includes('--build-from-source');

function prebuiltLoads() {
  let resolved;
  try {
    resolved = require('node-gyp-build').resolve(root);
  } catch {
    return false;
  }
  if (!resolved.startsWith(path.join(root, 'prebuilds'))) return false;
  const probe = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(resolved)}).devices()`], { stdio: 'pipe' });
  if (probe.status !== 0) {
    console.warn(`moekit: prebuilt ${path.relative(root, resolved)} does not load here (${probe.stderr.toString().trim()}); building from source`);
    return false;
  }
  console.log(`moekit: using prebuilt ${path.relative(root, resolved)}`);
  return true;
}

if (fromSource || !prebuiltLoads()) {
  const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
  const build = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
  if (build.status !== 0) {
    console.error('moekit: building from source failed; it needs cmake ≥ 3.24 and a C++17 compiler (nvcc optional)');
    process.exit(build.status ?? 1);
  }
}
