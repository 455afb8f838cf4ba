// Per-layer training curves as a standalone SVG (train and held-out panels side by side, like
// the public plots). Hand-written: no maintained Node plotting library without native deps.
import { writeFileAtomicSync } from '../util/atomic.js';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const DASHES = ['', '6 3', '2 2', '8 3 2 3'];

export interface PlotOptions {
  log?: boolean;
  min?: number;
  max?: number;
}

/** Write `file`: curves[e][l] over steps[e] for every layer l, train left, held-out right. */
export function plotCurves(file: string, title: string, steps: number[], train: number[][], test: number[][], layers: number[], o: PlotOptions = {}): void {
  const W = 1100;
  const Hh = 450;
  const panelW = 480;
  const panelH = 300;
  const margin = { left: 60, top: 60 };
  const all = [...train.flat(), ...test.flat()].filter((v) => Number.isFinite(v) && (!o.log || v > 0));
  let lo = o.min ?? Math.min(...all);
  let hi = o.max ?? Math.max(...all);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi === lo) hi = lo + 1;
  const tf = (v: number) => (o.log ? Math.log10(Math.max(v, 1e-12)) : v);
  const [tlo, thi] = [tf(lo), tf(hi)];
  const xMax = Math.max(1, ...steps);
  const parts: string[] = [];
  const panel = (x0: number, name: string, data: number[][]) => {
    const px = (s: number) => x0 + (s / xMax) * panelW;
    const py = (v: number) => margin.top + panelH - ((tf(v) - tlo) / (thi - tlo)) * panelH;
    parts.push(`<rect x="${x0}" y="${margin.top}" width="${panelW}" height="${panelH}" fill="none" stroke="#888"/>`);
    parts.push(`<text x="${x0 + panelW / 2}" y="${margin.top - 10}" text-anchor="middle" font-size="14">${name} — ${title}</text>`);
    for (let t = 0; t <= 4; t++) {
      const v = o.log ? 10 ** (tlo + ((thi - tlo) * t) / 4) : lo + ((hi - lo) * t) / 4;
      const y = py(v);
      parts.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#ddd" stroke-dasharray="3 3"/>`);
      parts.push(`<text x="${x0 - 5}" y="${y + 4}" text-anchor="end" font-size="10">${v.toPrecision(3)}</text>`);
    }
    parts.push(`<text x="${x0 + panelW / 2}" y="${margin.top + panelH + 30}" text-anchor="middle" font-size="12">step (max ${xMax})</text>`);
    layers.forEach((layer, l) => {
      const pts = steps
        .map((s, e) => [s, data[e]?.[l]] as const)
        .filter(([, v]) => v !== undefined && Number.isFinite(v) && (!o.log || v > 0))
        .map(([s, v]) => `${px(s).toFixed(1)},${py(v!).toFixed(1)}`);
      if (pts.length === 0) return;
      const color = PALETTE[l % PALETTE.length];
      const dash = DASHES[Math.floor(l / PALETTE.length) % DASHES.length];
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" ${dash ? `stroke-dasharray="${dash}"` : ''} points="${pts.join(' ')}"><title>layer ${layer}</title></polyline>`);
    });
  };
  panel(margin.left, 'Training', train);
  panel(margin.left + panelW + 60, 'Held-out', test);
  const legend = layers
    .map((layer, l) => {
      const x = 20 + (l % 16) * 66;
      const y = Hh - 25 + Math.floor(l / 16) * 14;
      return `<line x1="${x}" x2="${x + 16}" y1="${y}" y2="${y}" stroke="${PALETTE[l % PALETTE.length]}" stroke-width="2"/><text x="${x + 20}" y="${y + 4}" font-size="10">L${layer}</text>`;
    })
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${Hh + Math.floor(layers.length / 16) * 14}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}${legend}</svg>\n`;
  writeFileAtomicSync(file, svg);
}
