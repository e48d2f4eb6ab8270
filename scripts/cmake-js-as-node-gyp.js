#!/usr/bin/env node
// prebuildify calls `node-gyp rebuild --target=… --release …`; this stands in for node-gyp
// (prebuildify --node-gyp) and runs the same rebuild with cmake-js in the current directory, so
// that prebuildify names and places the result (prebuilds/<platform>-<arch>/moekit.node).
'use strict';
const { spawnSync } = require('child_process');

const args = process.argv.slice(2);
if (args[0] !== 'rebuild') {
  console.error(`cmake-js-as-node-gyp: only "rebuild" is supported, got ${args.join(' ')}`);
  process.exit(2);
}
const debug = args.includes('--debug');
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'rebuild', ...(debug ? ['--debug'] : [])], { stdio: 'inherit' });
process.exit(result.status ?? 1);
