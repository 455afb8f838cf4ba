// Training curves as a standalone SVG: panels side by side, one line per gate (model layer),
// a logarithmic step axis (the gates learn most in the first 1–2 % of steps) with labelled ticks,
// round y ticks. Hand-written: no maintained Node plotting library without native deps.
import { writeFileAtomicSync } from '../util/atomic.js';

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
const DASHES = ['', '6 3', '2 2', '8 3 2 3'];

export interface Curve {
  /** x of every point: steps done (1-based), increasing */
  steps: ArrayLike<number>;
  /** values[i][l]: layer l's value at steps[i] (NaN: no value) */
  values: ArrayLike<ArrayLike<number>>;
}

export interface PanelSpec {
  title: string;
  curve: Curve;
}

export interface PlotSpec {
  /** y-axis label, e.g. "BCE loss" */
  yLabel: string;
  log?: boolean;
  min?: number;
  max?: number;
  /** model layer of each series */
  layers: number[];
  /** last step (the x axis ends there) */
  steps: number;
  panels: PanelSpec[];
}

/** Round tick values covering [lo, hi]: steps of 1, 2 or 5 × 10^k, about `n` of them. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/** Log-axis ticks: decades, with 2 and 5 between them when the range spans less than two decades. */
export function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const span = Math.log10(hi / lo);
  const mults = span < 0.7 ? [1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9] : span < 2 ? [1, 2, 5] : [1];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mults) {
      const v = Number((m * 10 ** e).toPrecision(6));
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(v);
    }
  }
  return out;
}

const fmtTick = (v: number) => (Math.abs(v) >= 1000 ? v.toLocaleString('en-US') : String(Number(v.toPrecision(4))));

/** Write `file`: one panel per spec.panels entry, shared y range. */
export function plotPanels(file: string, title: string, spec: PlotSpec): void {
  writeFileAtomicSync(file, renderPanels(title, spec));
}

export function renderPanels(title: string, spec: PlotSpec): string {
  const panelW = 460;
  const panelH = 300;
  const left = 70;
  const top = 60;
  const gap = 90;
  // wide enough for the title (≈ 8 px per character at 15 px)
  const W = Math.max(left + spec.panels.length * (panelW + gap) - gap + 30, Math.ceil(title.length * 8 + 40));
  const finite = (v: number) => Number.isFinite(v) && (!spec.log || v > 0);
  // a loop, not Math.min(...values): 36 layers x 10,000 steps overflowed the call stack (Qwen3-8B gates)
  let vmin = Infinity;
  let vmax = -Infinity;
  for (const p of spec.panels) {
    for (let i = 0; i < p.curve.values.length; i++) {
      const row = p.curve.values[i]!;
      for (let l = 0; l < row.length; l++) {
        const v = row[l]!;
        if (!finite(v)) continue;
        if (v < vmin) vmin = v;
        if (v > vmax) vmax = v;
      }
    }
  }
  const any = vmin <= vmax;
  let lo = spec.min ?? (any ? vmin : 0);
  let hi = spec.max ?? (any ? vmax : 1);
  if (!(hi > lo)) hi = lo + (spec.log ? lo : 1) || 1;
  // widen to round values
  if (spec.log) {
    const ticks = logTicks(lo, hi);
    lo = Math.min(lo, ticks[0] ?? lo);
    hi = Math.max(hi, ticks.at(-1) ?? hi);
  } else if (spec.min === undefined || spec.max === undefined) {
    const t = niceTicks(lo, hi);
    const step = t.length > 1 ? t[1]! - t[0]! : 1;
    if (spec.min === undefined) lo = Math.floor(lo / step) * step;
    if (spec.max === undefined) hi = Math.ceil(hi / step) * step;
  }
  const yTicks = spec.log ? logTicks(lo, hi) : niceTicks(lo, hi);
  const ty = (v: number) => (spec.log ? Math.log10(v) : v);
  const xMax = Math.max(2, spec.steps);
  const xTicks = logTicks(1, xMax).filter((v) => Number.isInteger(v) && String(v)[0] === '1');
  if (xTicks.at(-1) !== xMax) xTicks.push(xMax);
  const parts: string[] = [`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${esc(title)}</text>`];
  const centre = (W - (left + spec.panels.length * (panelW + gap) - gap + 30)) / 2;
  spec.panels.forEach((panel, pi) => {
    const x0 = centre + left + pi * (panelW + gap);
    const px = (s: number) => x0 + (Math.log10(Math.max(1, s)) / Math.log10(xMax)) * panelW;
    const py = (v: number) => top + panelH - ((ty(v) - ty(lo)) / (ty(hi) - ty(lo))) * panelH;
    parts.push(`<rect x="${x0}" y="${top}" width="${panelW}" height="${panelH}" fill="none" stroke="#888"/>`);
    parts.push(`<text x="${x0 + panelW / 2}" y="${top - 10}" text-anchor="middle" font-size="13">${esc(panel.title)}</text>`);
    for (const v of yTicks) {
      const y = py(v).toFixed(1);
      parts.push(`<line x1="${x0}" x2="${x0 + panelW}" y1="${y}" y2="${y}" stroke="#e0e0e0"/>`);
      parts.push(`<text x="${x0 - 6}" y="${Number(y) + 4}" text-anchor="end" font-size="11">${fmtTick(v)}</text>`);
    }
    for (const s of xTicks) {
      const x = px(s).toFixed(1);
      parts.push(`<line x1="${x}" x2="${x}" y1="${top}" y2="${top + panelH}" stroke="#eeeeee"/>`);
      parts.push(`<text x="${x}" y="${top + panelH + 16}" text-anchor="middle" font-size="11">${fmtTick(s)}</text>`);
    }
    parts.push(`<text x="${x0 + panelW / 2}" y="${top + panelH + 36}" text-anchor="middle" font-size="12">optimizer step (log scale)</text>`);
    parts.push(`<text transform="translate(${x0 - 50},${top + panelH / 2}) rotate(-90)" text-anchor="middle" font-size="12">${esc(spec.yLabel)}${spec.log ? ' (log scale)' : ''}</text>`);
    const { steps, values } = panel.curve;
    spec.layers.forEach((layer, l) => {
      const runs: string[][] = [[]];
      for (let i = 0; i < steps.length; i++) {
        const v = values[i]?.[l];
        if (v === undefined || !finite(v)) {
          if (runs.at(-1)!.length) runs.push([]);
          continue;
        }
        runs.at(-1)!.push(`${px(steps[i]!).toFixed(1)},${py(Math.min(hi, Math.max(lo, v))).toFixed(1)}`);
      }
      const color = PALETTE[l % PALETTE.length];
      const dash = DASHES[Math.floor(l / PALETTE.length) % DASHES.length];
      for (const pts of runs.filter((r) => r.length)) {
        const single = pts.length === 1;
        if (single) {
          const [cx, cy] = pts[0]!.split(',');
          parts.push(`<circle cx="${cx}" cy="${cy}" r="2" fill="${color}"/>`);
        } else {
          parts.push(`<polyline fill="none" stroke="${color}" stroke-width="1.4" ${dash ? `stroke-dasharray="${dash}" ` : ''}points="${pts.join(' ')}"><title>layer ${layer}</title></polyline>`);
        }
      }
    });
  });
  // legend: one entry per gate, named by its model layer
  const legendTop = top + panelH + 60;
  const perRow = Math.max(1, Math.floor((W - 180) / 80));
  parts.push(`<text x="20" y="${legendTop + 4}" font-size="12">gate of model layer:</text>`);
  spec.layers.forEach((layer, l) => {
    const x = 150 + (l % perRow) * 80;
    const y = legendTop + Math.floor(l / perRow) * 18;
    const dash = DASHES[Math.floor(l / PALETTE.length) % DASHES.length];
    parts.push(`<line x1="${x}" x2="${x + 22}" y1="${y}" y2="${y}" stroke="${PALETTE[l % PALETTE.length]}" stroke-width="2" ${dash ? `stroke-dasharray="${dash}"` : ''}/><text x="${x + 27}" y="${y + 4}" font-size="11">layer ${layer}</text>`);
  });
  const H = legendTop + Math.ceil(spec.layers.length / perRow) * 18 + 10;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
