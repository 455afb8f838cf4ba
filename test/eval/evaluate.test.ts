// `evaluate` end to end on the qwen3 fixture (random gates, a local text corpus), the report
// files, and the small pure pieces: key–value insertion, SnapKV pooling, pass picking, CLI
// argument checks.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { modelDir } from '../helpers/golden.js';
import { randomGates } from './helpers.js';
import { openModel } from '../../src/model/load.js';
import { writeGateFile } from '../../src/gate/gate-file.js';
import { evaluate, pickPasses, EVAL_DEFAULTS, type EvalReport } from '../../src/eval/evaluate.js';
import { writeEvalOutputs } from '../../src/eval/report.js';
import { PUBLIC_WINDOW } from '../../src/eval/eviction.js';
import { insertKvPairs, KV_SENTENCE } from '../../src/eval/retrieval-data.js';
import { avgPool1d } from '../../src/eval/scorers.js';
import { parseRatios, parseScorers } from '../../src/cli/eval.js';
import { UserError } from '../../src/util/errors.js';

const SENTENCES = [
  'The state of the union is strong.',
  'Congress has passed many laws this year!',
  'Our nation trades with every port of the world.',
  'Is the treasury able to pay its debts?',
  'The army and the navy keep the peace.',
  'We thank the people for their work.',
];

describe('evaluate (qwen3 fixture)', () => {
  let tmp: string;
  let report: EvalReport;
  const saved = process.env.FASTKVZIP_CACHE;
  beforeAll(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-eval-'));
    process.env.FASTKVZIP_CACHE = path.join(tmp, 'cache');
    mkdirSync(path.join(tmp, 'docs'));
    for (let d = 0; d < 3; d++) {
      const text = Array.from({ length: 40 }, (_, i) => SENTENCES[(i * (d + 2)) % SENTENCES.length]).join(' ');
      writeFileSync(path.join(tmp, 'docs', `doc${d}.txt`), text);
    }
    const spec = openModel(modelDir('qwen3')).spec;
    await writeGateFile(path.join(tmp, 'gates.safetensors'), randomGates(spec));
    report = await evaluate({
      ...EVAL_DEFAULTS,
      model: modelDir('qwen3'),
      gates: tmp, // a folder holding gates.safetensors
      data: path.join(tmp, 'docs'),
      excludeDocs: ['doc1.txt'],
      contexts: 2,
      minContextTokens: 50,
      maxContextTokens: 300,
      ratios: [1, 0.5, 0.2],
      prefillChunk: 100,
      window: PUBLIC_WINDOW,
      scoreChunk: 100,
      reconChunk: 64,
      reconChunks: 2,
      kvPairs: 2,
      maxNewTokens: 3,
      snapWindow: 16,
      template: 'fastkvzip-tiny',
      device: { device: 'cpu' },
      quiet: true,
      log: () => {},
    });
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.FASTKVZIP_CACHE;
    else process.env.FASTKVZIP_CACHE = saved;
  });

  it('covers every scorer and ratio, keeping the requested fraction', () => {
    expect(report.contexts.map((c) => c.id)).toEqual(['doc0.txt', 'doc2.txt']);
    expect(report.cells).toHaveLength(5 * 3);
    for (const c of report.cells) {
      const units = report.model.scoredLayers.length * report.model.heads; // pair level: one budget over all entries
      const want = report.contexts.map((x) => Math.floor(c.ratio * x.tokens * units + 1e-9) / (x.tokens * units)).reduce((a, b) => a + b, 0) / report.contexts.length;
      expect(c.kept).toBeCloseTo(want, 9);
      expect(c.recon.tokens).toBe(report.reference.recon.tokens);
      expect(c.retrieval.queries).toBe(4);
    }
  });

  it('ratio 1.0 equals the reference; the oracle agrees with itself', () => {
    for (const c of report.cells.filter((x) => x.ratio === 1)) {
      expect(c.recon.acc).toBe(report.reference.recon.acc);
      expect(c.recon.logLikDelta).toBe(0);
      expect(c.agreement).toBe(1);
    }
    for (const c of report.cells.filter((x) => x.scorer === 'kvzip')) expect(c.agreement).toBe(1);
    expect(report.diagnostics.kvzip!.spearman.every((v) => Math.abs(v - 1) < 1e-9)).toBe(true);
    const rnd = report.cells.find((x) => x.scorer === 'random' && x.ratio === 0.2)!;
    expect(rnd.agreement).toBeLessThan(0.6);
  });

  it('writes eval.json, eval.md and quality.svg', async () => {
    const out = path.join(tmp, 'out');
    const files = await writeEvalOutputs(out, report, '## Findings\n\nnone');
    for (const f of files) expect(existsSync(f)).toBe(true);
    expect(JSON.parse(readFileSync(files[0]!, 'utf8')).cells).toHaveLength(15);
    const md = readFileSync(files[1]!, 'utf8');
    expect(md).toContain('| gates |');
    expect(md).toContain('## Findings');
    const svg = readFileSync(files[2]!, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    // one line per scorer and panel; the random fixture model never reconstructs (full-cache accuracy 0),
    // so the relative-accuracy panel has no finite values and stays empty
    expect(report.reference.recon.acc).toBe(0);
    expect((svg.match(/<polyline/g) ?? []).length).toBe(3 * 5);
  });
});

describe('eval pieces', () => {
  it('inserts distinct random pairs at sentence ends, reproducibly', () => {
    const text = SENTENCES.join(' ');
    const a = insertKvPairs(text, 3, 9);
    expect(a).toEqual(insertKvPairs(text, 3, 9));
    expect(new Set(a.pairs.map((p) => p.key)).size).toBe(3);
    for (const p of a.pairs) {
      expect(p.key).toMatch(/^[A-Z]{4}$/);
      expect(p.value).toMatch(/^[0-9]{6}$/);
      expect(a.text).toContain(KV_SENTENCE(p));
    }
    let stripped = a.text;
    for (const p of a.pairs) stripped = stripped.replace(KV_SENTENCE(p), '');
    expect(stripped).toBe(text);
  });

  it('pools like avg_pool1d(kernel 5, padding 2)', () => {
    expect(Array.from(avgPool1d(Float32Array.of(5, 0, 0, 0, 0, 0, 10), 5))).toEqual([1, 1, 1, 0, 2, 2, 2]);
  });

  it('picks evenly spaced reconstruction passes', () => {
    const passes = Array.from({ length: 9 }, (_, i) => ({ start: i, length: 1, ids: [i] }));
    expect(pickPasses(passes, 3).map((p) => p.start)).toEqual([0, 4, 8]);
    expect(pickPasses(passes, 0)).toHaveLength(9);
    expect(pickPasses(passes, 20)).toHaveLength(9);
  });

  it('checks CLI lists', () => {
    expect(parseRatios('1, 0.5,0.1')).toEqual([1, 0.5, 0.1]);
    expect(() => parseRatios('1,0')).toThrow(UserError);
    expect(() => parseRatios('1,x')).toThrow(UserError);
    expect(parseScorers('gates,window')).toEqual(['gates', 'window']);
    expect(() => parseScorers('gates,h2o')).toThrow(/unknown scorer "h2o"/);
  });
});
