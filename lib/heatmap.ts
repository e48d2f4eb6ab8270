/**
 * The expert-load heatmap ExpertMonitor.renderHeatmap writes: a self-contained SVG (no external
 * fonts, images or scripts) with one panel per layer, a row per expert and a column per step,
 * and an HTML page that holds it inline with a read-out of the cell under the pointer.
 *
 * Colour = load share relative to uniform, t = share·E/2 clamped to [0, 1] (viridis): the middle
 * of the scale is the uniform share 1/E, the dark end an idle expert, the bright end ≥ 2/E.
 * Every cell is <rect class="cell" data-expert data-step data-share> inside <g class="panel"
 * data-layer>, so a reader (or a test) can find each expert × step once.
 */

export interface HeatmapPanel {
  layer: string;
  experts: number;
  /** Step of each column. */
  steps: number[];
  /** share[column][expert], in [0, 1]. */
  share: number[][];
}

const VIRIDIS = ['#440154', '#482878', '#3e4989', '#31688e', '#26828e', '#1f9e89', '#35b779', '#6ece58', '#b5de2b', '#fde725'];
const LEFT = 84;
const RIGHT = 24;
const TOP = 44;
const PANEL_GAP = 28;
const AXIS = 36;
const LEGEND = 56;
const PLOT_WIDTH = 960;

/** t in [0, 1] → a viridis colour, interpolated linearly between the stops. */
export function viridis(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const rgb = (hex: string) => [1, 3, 5].map((o) => parseInt(hex.slice(o, o + 2), 16));
  const [a, b] = [rgb(VIRIDIS[i]), rgb(VIRIDIS[i + 1])];
  return '#' + a.map((v, c) => Math.round(v + (b[c] - v) * (x - i)).toString(16).padStart(2, '0')).join('');
}

export function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const num = (x: number) => String(Math.round(x * 100) / 100);

/** The SVG document (with its XML declaration). */
export function heatmapSvg(panels: HeatmapPanel[], title: string): string {
  const columns = Math.max(1, ...panels.map((p) => p.steps.length));
  const cellW = Math.min(16, Math.max(1, PLOT_WIDTH / columns));
  const width = LEFT + columns * cellW + RIGHT;
  const parts: string[] = [];
  let y = TOP;
  for (const panel of panels) {
    const cellH = Math.min(16, Math.max(3, Math.floor(320 / panel.experts)));
    const plotH = panel.experts * cellH;
    const name = escapeXml(panel.layer);
    parts.push(`<g class="panel" data-layer="${name}">`);
    parts.push(`<text x="${LEFT}" y="${y - 8}" font-size="13" font-weight="bold">${name}</text>`);
    const labelEvery = Math.ceil(11 / cellH);
    for (let e = 0; e < panel.experts; e += labelEvery) {
      parts.push(`<text x="${LEFT - 6}" y="${num(y + (e + 0.5) * cellH + 4)}" font-size="10" text-anchor="end">e${e}</text>`);
    }
    panel.share.forEach((row, c) => {
      const x = num(LEFT + c * cellW);
      for (let e = 0; e < panel.experts; e++) {
        const share = row[e];
        parts.push(`<rect class="cell" x="${x}" y="${y + e * cellH}" width="${num(cellW)}" height="${cellH}" fill="${viridis((share * panel.experts) / 2)}" data-expert="${e}" data-step="${panel.steps[c]}" data-share="${share.toPrecision(4)}"/>`);
      }
    });
    parts.push(`<rect x="${LEFT}" y="${y}" width="${num(panel.steps.length * cellW)}" height="${plotH}" fill="none" stroke="#333" stroke-width="0.5"/>`);
    const ticks = Math.min(panel.steps.length, 6);
    for (let i = 0; i < ticks; i++) {
      const c = ticks === 1 ? 0 : Math.round((i * (panel.steps.length - 1)) / (ticks - 1));
      const x = num(LEFT + (c + 0.5) * cellW);
      parts.push(`<line x1="${x}" y1="${y + plotH}" x2="${x}" y2="${y + plotH + 4}" stroke="#333"/>`);
      parts.push(`<text x="${x}" y="${y + plotH + 15}" font-size="10" text-anchor="middle">${panel.steps[c]}</text>`);
    }
    parts.push(`<text x="${num(LEFT + (panel.steps.length * cellW) / 2)}" y="${y + plotH + 29}" font-size="10" text-anchor="middle">step</text>`);
    parts.push('</g>');
    y += plotH + AXIS + PANEL_GAP;
  }
  const legendW = 240;
  const stops = VIRIDIS.map((c, i) => `<stop offset="${num(i / (VIRIDIS.length - 1))}" stop-color="${c}"/>`).join('');
  parts.push(`<g class="legend"><text x="${LEFT}" y="${y - 6}" font-size="11">load share of the expert (c_i / Σc)</text>`);
  parts.push(`<rect x="${LEFT}" y="${y}" width="${legendW}" height="12" fill="url(#load-scale)" stroke="#333" stroke-width="0.5"/>`);
  const labels: [number, string][] = [[0, '0'], [0.5, '1/E (uniform)'], [1, '≥ 2/E']];
  for (const [t, label] of labels) parts.push(`<text x="${num(LEFT + t * legendW)}" y="${y + 25}" font-size="10" text-anchor="middle">${escapeXml(label)}</text>`);
  parts.push('</g>');
  const height = y + LEGEND - 20;
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${num(width)}" height="${height}" viewBox="0 0 ${num(width)} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<title>${escapeXml(title)}</title>`,
    `<defs><linearGradient id="load-scale" x1="0" x2="1" y1="0" y2="0">${stops}</linearGradient></defs>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

/** An HTML page around the SVG: heading, what the colours mean, and a pointer read-out. */
export function heatmapHtml(svg: string, title: string, panels: HeatmapPanel[]): string {
  const inline = svg.replace(/^<\?xml[^>]*>\n/, '');
  const rows = panels
    .map((p) => `<li>${escapeXml(p.layer)}: ${p.experts} experts, ${p.steps.length} steps${p.steps.length ? ` (${p.steps[0]}–${p.steps[p.steps.length - 1]})` : ''}</li>`)
    .join('');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeXml(title)}</title>
<style>
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 16px; color: #222; background: #fff; }
#readout { font-family: monospace; min-height: 1.4em; }
svg { max-width: 100%; height: auto; }
</style>
</head>
<body>
<h1>${escapeXml(title)}</h1>
<p>Rows are experts, columns are steps; a cell's colour is the expert's share of the step's top-k
selections. The middle of the scale is the uniform share 1/E; dark cells are idle experts.</p>
<ul>${rows}</ul>
<p id="readout">Point at a cell to read it.</p>
${inline}
<script>
document.querySelector('svg').addEventListener('mousemove', function (event) {
  var cell = event.target.closest('rect.cell');
  if (!cell) return;
  var layer = cell.closest('g.panel').getAttribute('data-layer');
  document.getElementById('readout').textContent = layer + '  expert ' + cell.getAttribute('data-expert') +
    '  step ' + cell.getAttribute('data-step') + '  load share ' + (100 * Number(cell.getAttribute('data-share'))).toFixed(1) + '%';
});
</script>
</body>
</html>
`;
}
