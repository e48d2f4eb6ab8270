/**
 * A browser renders the HTML heatmap: headless Chromium (Debian's `chromium`, which .ci/run
 * installs) takes a screenshot of the page, and the decoded PNG must show the heatmap: many
 * colours, a large non-white area, and the two ends of the colour scale. Without chromium on
 * PATH the test is skipped, and its name says so.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { pathToFileURL } from 'url';
import type { ExpertStats } from '../lib';
import { ExpertMonitor } from '../lib/monitor';
import { decodePng } from './helpers/png';

const WIDTH = 1200;
const HEIGHT = 900;

function findChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const candidate = path.join(dir, name);
      if (dir && fs.existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/** Two layers, 40 steps: expert e's share rises and falls with the step, expert 0 idles from step 20. */
function monitorWithHistory(): ExpertMonitor {
  const monitor = new ExpertMonitor();
  for (let step = 1; step <= 40; step++) {
    for (const [layer, E] of [['moe1', 8], ['moe2', 16]] as const) {
      const counts = Array.from({ length: E }, (_, e) => (e === 0 && step >= 20 ? 0 : 1 + Math.round(20 * (1 + Math.sin((step + 3 * e) / 4)))));
      const tokens = counts.reduce((a, b) => a + b, 0) / 2;
      const stats: ExpertStats = {
        tokens,
        counts: Int32Array.from(counts),
        accepted: Int32Array.from(counts),
        dropped: new Int32Array(E),
        f: Float64Array.from(counts, (c) => c / (2 * tokens)),
        P: new Float64Array(E).fill(1 / E),
        maxVio: 0,
        cv: 0,
        entropy: 1,
        flops: counts.map((c) => 100 * c),
        sharedFlops: 0,
      };
      monitor.observe(layer, stats);
    }
  }
  return monitor;
}

const chromium = findChromium();
const browserTest = chromium ? test : test.skip;
const reason = chromium ? '' : ' (skipped: no chromium on PATH; .ci/run installs Debian\'s chromium)';
if (!chromium) console.warn(`heatmap browser test${reason}`);

browserTest(`headless Chromium renders the HTML heatmap: the screenshot is not blank and shows both ends of the colour scale${reason}`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-heatmap-'));
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'moekit-chromium-'));
  try {
    const { html } = monitorWithHistory().renderHeatmap(path.join(dir, 'load.svg'), { title: 'Browser check' });
    const png = path.join(dir, 'shot.png');
    execFileSync(chromium as string, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--user-data-dir=${profile}`, `--screenshot=${png}`, `--window-size=${WIDTH},${HEIGHT}`,
      pathToFileURL(html).href,
    ], { stdio: 'pipe', timeout: 120_000 });
    const image = decodePng(fs.readFileSync(png));
    expect([image.width, image.height]).toEqual([WIDTH, HEIGHT]);

    const colours = new Set<number>();
    let nonWhite = 0;
    let darkEnd = 0;
    let brightEnd = 0;
    const near = (r: number, g: number, b: number, hex: string) =>
      Math.abs(r - parseInt(hex.slice(1, 3), 16)) + Math.abs(g - parseInt(hex.slice(3, 5), 16)) + Math.abs(b - parseInt(hex.slice(5, 7), 16)) <= 12;
    for (let p = 0; p < image.width * image.height; p++) {
      const [r, g, b] = image.rgba.subarray(p * 4, p * 4 + 3);
      colours.add((r << 16) | (g << 8) | b);
      if (r < 245 || g < 245 || b < 245) nonWhite++;
      if (near(r, g, b, '#440154')) darkEnd++;
      if (near(r, g, b, '#fde725')) brightEnd++;
    }
    expect(colours.size).toBeGreaterThan(50);
    expect(nonWhite / (image.width * image.height)).toBeGreaterThan(0.1);
    expect(darkEnd).toBeGreaterThan(100);
    expect(brightEnd).toBeGreaterThan(100);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(profile, { recursive: true, force: true });
  }
}, 180_000);
