// Quality vs kept ratio as a standalone SVG: one panel per measure, one line per scorer.
// Hand-written like src/gate/plot.ts (no plotting dependency).
import type { EvalReport } from './evaluate.js';
import { niceTicks } from '../gate/plot.js';

const COLORS: Record<string, string> = { gates: '#d62728', kvzip: '#1f77b4', snapkv: '#2ca02c', window: '#ff7f0e', random: '#7f7f7f' };
const DASH: Record<string, string> = { kvzip: '6 3', random: '2 3' };

interface Panel {
  title: string;
  value: (c: EvalReport['cells'][number]) => number;
  min?: number;
  max?: number;
}

export const PANELS: Panel[] = [
  { title: 'reconstruction accuracy (rel. to full cache)', value: (c) => c.recon.accRel, max: 1.02 },
  { title: 'reconstruction log-lik − full (nats/token)', value: (c) => c.recon.logLikDelta, max: 0.05 },
  { title: 'retrieval exact match', value: (c) => c.retrieval.acc, min: 0, max: 1 },
  { title: 'agreement: recall of KVzip top-k', value: (c) => c.agreement, min: 0, max: 1 },
];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function qualitySvg(report: EvalReport, title: string): string {
  const pw = 400;
  const ph = 250;
  const ml = 60;
  const mt = 70;
  const gapX = 90;
  const gapY = 90;
  const W = ml + 2 * pw + gapX + 30;
  const H = mt + 2 * ph + gapY + 70;
  const scorers = report.settings.scorers;
  const ratios = report.settings.ratios;
  const parts: string[] = [`<text x="${W / 2}" y="28" text-anchor="middle" font-size="16">${esc(title)}</text>`];
  PANELS.forEach((p, i) => {
    const x0 = ml + (i % 2) * (pw + gapX);
    const y0 = mt + Math.floor(i / 2) * (ph + gapY);
    const vals = report.cells.map(p.value).filter(Number.isFinite);
    let lo = p.min ?? Math.min(...vals);
    let hi = p.max ?? Math.max(...vals);
    if (p.min === undefined) lo = Math.min(lo, hi - 1e-3);
    if (p.max !== undefined) hi = Math.max(hi, ...vals);
    if (!Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) [lo, hi] = [0, 1];
    // round ticks; the axis widened to the nearest of them
    const ticks0 = niceTicks(lo, hi, 5);
    const step = ticks0.length > 1 ? ticks0[1]! - ticks0[0]! : 1;
    if (p.min === undefined) lo = Math.floor(lo / step + 1e-9) * step;
    if (p.max === undefined) hi = Math.ceil(hi / step - 1e-9) * step;
    const yTicks = niceTicks(lo, hi, 5);
    const px = (r: number) => x0 + r * pw;
    const py = (v: number) => y0 + ph - ((v - lo) / (hi - lo)) * ph;
    parts.push(`<rect x="${x0}" y="${y0}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`);
    parts.push(`<text x="${x0 + pw / 2}" y="${y0 - 10}" text-anchor="middle" font-size="13">${esc(p.title)}</text>`);
    for (const v of yTicks) {
      parts.push(`<line x1="${x0}" x2="${x0 + pw}" y1="${py(v)}" y2="${py(v)}" stroke="#e4e4e4"/>`);
      parts.push(`<text x="${x0 - 5}" y="${py(v) + 4}" text-anchor="end" font-size="10">${Number(v.toPrecision(6))}</text>`);
    }
    for (const r of ratios) {
      parts.push(`<line x1="${px(r)}" x2="${px(r)}" y1="${y0}" y2="${y0 + ph}" stroke="#f0f0f0"/>`);
      parts.push(`<text x="${px(r)}" y="${y0 + ph + 15}" text-anchor="middle" font-size="10">${r}</text>`);
    }
    parts.push(`<text x="${x0 + pw / 2}" y="${y0 + ph + 32}" text-anchor="middle" font-size="11">KV kept (ratio)</text>`);
    for (const s of scorers) {
      const pts = report.cells
        .filter((c) => c.scorer === s && Number.isFinite(p.value(c)))
        .sort((a, b) => a.ratio - b.ratio)
        .map((c) => `${px(c.ratio).toFixed(1)},${py(Math.max(lo, Math.min(hi, p.value(c)))).toFixed(1)}`);
      if (pts.length === 0) continue;
      const color = COLORS[s] ?? '#000';
      parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" ${DASH[s] ? `stroke-dasharray="${DASH[s]}"` : ''} points="${pts.join(' ')}"><title>${s}</title></polyline>`);
      for (const pt of pts) {
        const [cx, cy] = pt.split(',');
        parts.push(`<circle cx="${cx}" cy="${cy}" r="2.5" fill="${color}"/>`);
      }
    }
  });
  const legendY = H - 25;
  scorers.forEach((s, i) => {
    const x = ml + i * 120;
    const color = COLORS[s] ?? '#000';
    parts.push(`<line x1="${x}" x2="${x + 24}" y1="${legendY}" y2="${legendY}" stroke="${color}" stroke-width="2" ${DASH[s] ? `stroke-dasharray="${DASH[s]}"` : ''}/>`);
    parts.push(`<text x="${x + 30}" y="${legendY + 4}" font-size="12">${s}</text>`);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`;
}
