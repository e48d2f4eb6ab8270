#!/usr/bin/env node
// npm run prebuild: writes prebuilds/<platform>-<arch>/moekit.node with prebuildify (N-API, so
// one binary serves every Node version ≥ 20.17). prebuildify builds in a staging copy of the
// sources, so the working build/ folder (and any process using it) is left alone.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const staging = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-prebuild-'));
try {
  for (const entry of ['CMakeLists.txt', 'package.json', 'native']) {
    fs.cpSync(path.join(root, entry), path.join(staging, entry), { recursive: true });
  }
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(staging, 'node_modules'), 'dir');
  const prebuildify = require.resolve('prebuildify/bin.js');
  const result = spawnSync(
    process.execPath,
    [prebuildify, '--napi', '--strip', '--cwd', staging, '--out', root, '--node-gyp', path.join(__dirname, 'cmake-js-as-node-gyp.js')],
    { cwd: staging, stdio: 'inherit' },
  );
  if (result.status !== 0) process.exit(result.status ?? 1);
  const dir = path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`);
  console.log(`moekit: wrote ${fs.readdirSync(dir).map((f) => path.join(path.relative(root, dir), f)).join(', ')}`);
} finally {
  fs.rmSync(staging, { recursive: true, force: true });
}
