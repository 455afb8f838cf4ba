// Training and eval plots (issue 14): labelled log step axis, round y ticks, a legend that says
// the lines are layers, and the recall curve's fast top-k equal to topKRecall.
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import { logTicks, niceTicks, renderPanels } from '../../src/gate/plot.js';
import { recallAgainst, topKMask, topKRecall } from '../../src/gate/schedule.js';
import { qualitySvg } from '../../src/eval/plot.js';
import { Rng } from '../../src/util/random.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
const round = (v: number) => /^-?\d+(\.\d)?$/.test(String(v)) || /^-?0\.0*[125]$/.test(String(v)) || /^-?[125]0*$/.test(String(v));

describe('ticks', () => {
  it('niceTicks steps by 1, 2 or 5 x 10^k', () => {
    expect(niceTicks(0, 1)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1]);
    expect(niceTicks(0.213, 0.97)).toEqual([0.4, 0.6, 0.8]);
    expect(niceTicks(-9.3, 0.4)).toEqual([-8, -6, -4, -2, 0]);
  });
  it('logTicks: decades, with 2 and 5 inside a short range; never the data extremes', () => {
    expect(logTicks(1, 5000)).toEqual([1, 10, 100, 1000]);
    expect(logTicks(0.08, 2.63)).toEqual([0.1, 0.2, 0.5, 1, 2]);
  });
});

describe('training curves', () => {
  const steps = Array.from({ length: 5000 }, (_, i) => i + 1);
  const values = steps.map((s) => [2.63 / Math.sqrt(s), 1.09 / s ** 0.3]);
  const svg = renderPanels('loss', { yLabel: 'BCE loss', log: true, layers: [0, 7], steps: 5000, panels: [{ title: 'train', curve: { steps, values } }] });
  const t = texts(svg);
  it('labels the log step axis and the y axis with round values', () => {
    for (const x of ['1', '10', '100', '1,000', '5,000']) expect(t).toContain(x);
    expect(t).toContain('optimizer step (log scale)');
    const yTicks = t.filter((x) => /^[\d.]+$/.test(x) && !['1', '10', '100'].includes(x)).map(Number);
    expect(yTicks.length).toBeGreaterThan(2);
    for (const v of yTicks) expect(round(v), String(v)).toBe(true);
    expect(t).not.toContain('2.63');
  });
  it('names the lines as model layers', () => {
    expect(t).toContain('gate of model layer:');
    expect(t).toEqual(expect.arrayContaining(['layer 0', 'layer 7']));
  });
});

describe('a Qwen3-8B-sized curve', () => {
  // 36 layers x 10,000 metric steps (two groups of 5,000): spreading 360,000 values into
  // Math.min overflowed the call stack on the GPU machine after a finished training run
  it('renders with the data range on the y axis', () => {
    const steps = Array.from({ length: 10000 }, (_, i) => i + 1);
    const layers = Array.from({ length: 36 }, (_, l) => l);
    const values = steps.map((s) => layers.map((l) => 0.3 + 0.5 / Math.sqrt(s) + l * 1e-3));
    const svg = renderPanels('loss', { yLabel: 'BCE loss', log: true, layers, steps: 10000, panels: [{ title: 'train', curve: { steps, values } }] });
    const yTicks = texts(svg).filter((x) => /^0\.\d+$/.test(x)).map(Number);
    expect(Math.min(...yTicks)).toBeLessThanOrEqual(0.4);
    expect(Math.max(...yTicks)).toBeGreaterThanOrEqual(0.8);
  });
});

describe('recall curve', () => {
  it('topKMask + recallAgainst equal topKRecall, ties included', () => {
    const rng = new Rng(4);
    for (let trial = 0; trial < 20; trial++) {
      const n = 1 + Math.floor(rng.uniform(0, 300));
      const q = (x: number) => Math.round(x * 20) / 20; // many ties
      const a = Array.from({ length: n }, () => q(rng.uniform(0, 1)));
      const b = Array.from({ length: n }, () => q(rng.uniform(0, 1)));
      expect(recallAgainst(topKMask(a, 0.3), b, 0.3)).toBeCloseTo(topKRecall(a, b, 0.3), 12);
    }
  });
});

describe('quality.svg', () => {
  it('has round y ticks', () => {
    const report = JSON.parse(readFileSync(path.join(ROOT, 'reports', 'eval-default', 'eval.json'), 'utf8'));
    const svg = qualitySvg(report, `Fast KVzip eval — ${report.model.id} (${report.settings.level} level)`);
    const committed = readFileSync(path.join(ROOT, 'reports', 'eval-default', 'quality.svg'), 'utf8');
    expect(committed.trim()).toBe(svg.trim()); // the committed plot is this rendering of eval.json
    const ratios = new Set(report.settings.ratios.map(String));
    const yTicks = texts(svg).filter((x) => /^-?[\d.]+$/.test(x) && !ratios.has(x)).map(Number);
    expect(yTicks.length).toBeGreaterThan(8);
    for (const v of yTicks) expect(round(v), String(v)).toBe(true);
  });
});
