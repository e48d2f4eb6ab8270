/**
 * npm run bench -- <suite...> [--quick] [--json FILE]
 * Suites: gemm, router, permute, layer (default: all). Prints a table per suite with the shape,
 * thread count and machine, and writes the results as JSON (default bench/results/<time>.json).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { packageRoot } from '../lib/native';
import { gemmSuite } from './suites/gemm';
import { layerSuite } from './suites/layer';
import { permuteSuite } from './suites/permute';
import { routerSuite } from './suites/router';
import { formatTable, Row } from './table';

const SUITES = ['gemm', 'router', 'permute', 'layer'] as const;
type Suite = (typeof SUITES)[number];

function parseArgs(argv: string[]): { suites: Suite[]; quick: boolean; json: string } {
  const suites: Suite[] = [];
  let quick = false;
  let json = path.join(packageRoot(), 'bench', 'results', `${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') quick = true;
    else if (arg === '--json') json = argv[++i];
    else if ((SUITES as readonly string[]).includes(arg)) suites.push(arg as Suite);
    else {
      console.error(`unknown argument "${arg}"; usage: npm run bench -- [${SUITES.join('|')}...] [--quick] [--json FILE]`);
      process.exit(2);
    }
  }
  return { suites: suites.length > 0 ? suites : [...SUITES], quick, json };
}

function main(): void {
  const { suites, quick, json } = parseArgs(process.argv.slice(2));
  const threads = Number(process.env.MOEKIT_NUM_THREADS) || os.availableParallelism();
  const machine = { date: new Date().toISOString(), cpu: os.cpus()[0]?.model ?? 'unknown', cores: os.availableParallelism(), threads, node: process.version, quick };
  console.log(`moekit bench — ${machine.date} — ${machine.cpu}, ${machine.cores} cores, ${threads} threads${quick ? ' (quick: T/8)' : ''}`);
  const results: Record<string, { rows: Row[]; notes: string[] }> = {};
  for (const suite of suites) {
    const out =
      suite === 'gemm' ? { rows: gemmSuite(quick), notes: [] } :
      suite === 'router' ? { rows: routerSuite(quick), notes: [] } :
      suite === 'permute' ? { rows: permuteSuite(quick), notes: [] } :
      layerSuite(quick, threads);
    results[suite] = out;
    console.log(`\n## ${suite}\n${formatTable(out.rows)}`);
    for (const note of out.notes) console.log(`  ${note}`);
  }
  fs.mkdirSync(path.dirname(json), { recursive: true });
  fs.writeFileSync(json, JSON.stringify({ machine, results }, null, 2));
  console.log(`\nresults written to ${json}`);
}

main();
