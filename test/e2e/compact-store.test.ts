// Issue 16 end to end: `extract --hidden-dtype int8|float8e4m3 [--keep-fraction p]` on the tiny
// fixture model writes exactly the quantised / subsampled rows of the 16-bit store of the same
// run, and `train` reads every form with the same held-out positions.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from '../helpers/golden.js';
import { readManifest, readLayer, verifyStore, type LayerChunk } from '../../src/features/index.js';
import { quantize16 } from '../../src/features/quant.js';
import { keptPositions } from '../../src/features/keep.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-compact-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const EXTRACT = ['extract', '--model', modelDir('qwen3'), '--data', 'sotu', '--min-doc-tokens', '3000', '--max-doc-tokens', '9000',
  '--ten-k-count', '2', '--cat-count', '1', '--cat-min-tokens', '9000', '--max-tokens', '25000', '--prefill-chunk', '2048', '--score-chunk', '512', '--threads', '1', '--allow-long-contexts'];

function fkz(args: string[], extraEnv: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function layerChunks(store: string, layer: number): Promise<LayerChunk[]> {
  const out: LayerChunk[] = [];
  for await (const c of readLayer(store, layer)) out.push(c);
  return out;
}

const store = (name: string) => path.join(tmp, name);

const INT8K = ['--hidden-dtype', 'int8', '--keep-fraction', '0.3', '--keep-seed', '5'];
const INT8B = ['--hidden-dtype', 'int8', '--quant-block', '16', '--keep-fraction', '0.5'];
/** extract --json summaries by store name */
const summaries: Record<string, { quant?: string }> = {};

beforeAll(() => {
  // 8-bit codes are made in the KVzip graph by default; the *-host stores by the shard writers (FASTKVZIP_QUANT=host)
  for (const [name, flags, quant] of [
    ['bf16', [], undefined],
    ['int8', ['--hidden-dtype', 'int8'], undefined],
    ['fp8b', ['--hidden-dtype', 'float8e4m3', '--quant-block', '16'], undefined],
    ['int8k', INT8K, undefined],
    ['int8-host', ['--hidden-dtype', 'int8'], 'host'],
    ['int8k-host', INT8K, 'host'],
    ['int8b', INT8B, 'graph'],
    ['int8b-host', INT8B, 'host'],
    ['fp8b-host', ['--hidden-dtype', 'float8e4m3', '--quant-block', '16'], 'host'],
  ] as const) {
    const e = fkz([...EXTRACT, ...flags, '--out', store(name), '--json'], quant ? { FASTKVZIP_QUANT: quant } : {});
    if (e.code !== 0) throw new Error(`extract ${name}: ${e.stderr}`);
    summaries[name] = JSON.parse(e.stdout);
  }
}, 400_000);

describe('compact extraction (issue 16)', () => {
  it('int8 and fp8 stores hold exactly the quantised rows of the 16-bit store; about half its size', async () => {
    const base = await readManifest(store('bf16'));
    for (const [name, dtype, block] of [['int8', 'int8', base.model.D], ['fp8b', 'float8e4m3', 16]] as const) {
      const m = await readManifest(store(name));
      expect(m.hiddenDtype).toBe(dtype);
      expect(m.extract.quantBlock).toBe(block);
      expect(m.extract.quantSource).toBe(base.hiddenDtype);
      expect(m.totals.tokens).toBe(base.totals.tokens);
      expect(m.totals.bytes / base.totals.bytes).toBeLessThan(0.7); // D 48: page padding of each layer weighs here; ≈ 0.5 at real D
      expect((await verifyStore(store(name))).ok).toBe(true);
      for (const layer of m.model.scoredLayers) {
        const [want, got] = [await layerChunks(store('bf16'), layer), await layerChunks(store(name), layer)];
        got.forEach((c, i) => {
          const q = quantize16(dtype, want[i]!.hidden as Uint16Array, base.hiddenDtype as 'bfloat16', m.model.D, block);
          expect(Buffer.compare(Buffer.from(c.hidden.buffer, c.hidden.byteOffset, c.hidden.byteLength), Buffer.from(q.codes.buffer))).toBe(0);
          expect(Array.from(c.scales!)).toEqual(Array.from(q.scales));
          expect(Array.from(c.scores)).toEqual(Array.from(want[i]!.scores));
        });
      }
    }
  });

  it('--keep-fraction keeps the seeded positions (held-out ones included) with their scores', async () => {
    const base = await readManifest(store('bf16'));
    const m = await readManifest(store('int8k'));
    expect(m.extract.keepFraction).toBe(0.3);
    expect(m.extract.keepSeed).toBe(5);
    const D = m.model.D;
    const H = m.model.H;
    for (const layer of [m.model.scoredLayers[0]!]) {
      const [want, got] = [await layerChunks(store('bf16'), layer), await layerChunks(store('int8k'), layer)];
      let offset = 0;
      got.forEach((c, i) => {
        const w = want[i]!;
        expect(m.shards[i]!.contextTokens).toBe(w.tokens);
        const rows = keptPositions(w.tokens, offset, 0.3, 5, c.contextId);
        expect(Array.from(c.positions!)).toEqual(Array.from(rows));
        const bits = new Uint16Array(rows.length * D);
        rows.forEach((t, r) => bits.set((w.hidden as Uint16Array).subarray(t * D, (t + 1) * D), r * D));
        expect(Array.from(c.hidden)).toEqual(Array.from(quantize16('int8', bits, base.hiddenDtype as 'bfloat16', D, D).codes));
        rows.forEach((t, r) => expect(Array.from(c.scores.subarray(r * H, (r + 1) * H))).toEqual(Array.from(w.scores.subarray(t * H, (t + 1) * H))));
        offset += w.tokens;
      });
    }
  });

  it('8-bit codes made in the KVzip graph give the very bytes of the host quantiser (same shard checksums), with and without kept rows and blocks', async () => {
    expect(summaries['int8']!.quant).toBe('graph');
    expect(summaries['int8k']!.quant).toBe('graph');
    expect(summaries['int8b']!.quant).toBe('graph');
    expect(summaries['fp8b']!.quant).toBe('graph');
    expect(summaries['int8-host']!.quant).toBe('host');
    expect(summaries['bf16']!.quant).toBeUndefined();
    for (const name of ['int8', 'int8k', 'int8b', 'fp8b']) {
      const [graph, host] = [await readManifest(store(name)), await readManifest(store(`${name}-host`))];
      expect(graph.shards.length).toBeGreaterThan(0);
      expect(graph.shards.map((x) => [x.contextId, x.sha256, x.bytes])).toEqual(host.shards.map((x) => [x.contextId, x.sha256, x.bytes]));
      expect(graph.totals).toEqual(host.totals);
    }
    // the graphs were really the in-graph kinds (and the block is part of the file name)
    const graphs = readdirSync(path.join(tmp, 'cache', 'graphs')).flatMap((d) => readdirSync(path.join(tmp, 'cache', 'graphs', d)));
    expect(graphs).toEqual(expect.arrayContaining(['kvzip_int8.onnx', 'kvzip_int8_keep.onnx', 'kvzip_int8_keep.b16.onnx', 'kvzip_fp8.b16.onnx']));
  });

  it('train reads every form; the held-out positions are the same tokens in each', () => {
    const summaries = ['bf16', 'int8', 'fp8b', 'int8k'].map((name) => {
      const r = fkz(['train', '--features', store(name), '--out', path.join(tmp, `g-${name}`), '--steps', '60', '--batch', '128', '--threads', '1', '--json']);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout);
    });
    const test = summaries.map((s) => s.tokens.test);
    expect(new Set(test).size).toBe(1);
    // int8 features are within 1 % of bf16: the gates land close to the 16-bit ones
    expect(Math.abs(summaries[1].mean.testLoss - summaries[0].mean.testLoss)).toBeLessThan(0.02);
    expect(summaries[3].tokens.train).toBeLessThan(0.35 * summaries[0].tokens.train);
    for (const s of summaries) expect(Number.isFinite(s.mean.testLoss)).toBe(true);
  });

  it('--keep-fraction with --shard, and --quant-block with a 16-bit dtype, are refused with exit 2 or 1 and a one-line reason', () => {
    const a = fkz([...EXTRACT, '--keep-fraction', '0.5', '--shard', '0/2', '--out', store('bad1')]);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/--keep-fraction with --shard/);
    const b = fkz([...EXTRACT, '--quant-block', '16', '--out', store('bad2')]);
    expect(b.code).not.toBe(0);
    expect(b.stderr).toMatch(/--quant-block applies to the 8-bit hidden dtypes/);
    expect(readFileSync(path.join(store('int8'), 'manifest.json'), 'utf8')).toContain('"quantSource"');
  });
});
