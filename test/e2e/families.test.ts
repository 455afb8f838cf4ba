// Every target family through the commands a user runs, on the part-A fixtures and on the
// real-checkpoint layouts: extract (chunked prefill, several reconstruction chunks, chunk sizes
// that divide nothing) -> the store equals the Python reference's goldens (scores <= 1e-4 in
// fp32; attention inputs within the store dtype's rounding) -> train -> export pt, safetensors
// and onnx -> eval on a held-out text, with the trained gates and with the exported .pt.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURES, golden, maxAbsDiff, maxHalfRoundingRatio } from '../helpers/golden.js';
import { readManifest, readLayer } from '../../src/features/index.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../src/util/half.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-families-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(() => {
  for (const [name, folder] of [['doc.txt', 'doc'], ['heldout.txt', 'heldout']]) {
    mkdirSync(path.join(tmp, folder));
    copyFileSync(path.join(FIXTURES, 'cli', name), path.join(tmp, folder, name));
  }
});

const CASES: { name: string; model: string; golden: string; gateDir: string; extra?: string[] }[] = [
  { name: 'llama', model: 'models/llama', golden: 'cli-llama', gateDir: 'llama' },
  { name: 'qwen2', model: 'models/qwen2', golden: 'cli-qwen2', gateDir: 'qwen2' },
  { name: 'qwen3', model: 'models/qwen3', golden: 'cli-qwen3', gateDir: 'qwen3' },
  { name: 'gemma3', model: 'models/gemma3', golden: 'cli-gemma3', gateDir: 'gemma3' },
  { name: 'Qwen3-8B layout', model: 'layouts/qwen3-8b', golden: 'cli-qwen3-8b', gateDir: 'qwen3-8b' },
  { name: 'Qwen3-8B layout, public YaRN', model: 'layouts/qwen3-8b', golden: 'cli-qwen3-8b-yarn', gateDir: 'qwen3-8b', extra: ['--rope-override', 'yarn:4:32768'] },
  { name: 'Qwen2.5-7B-Instruct-1M layout', model: 'layouts/qwen2.5-7b-instruct-1m', golden: 'cli-qwen2.5-7b-instruct-1m', gateDir: 'qwen2.5-7b-instruct-1m' },
  { name: 'Llama-3.1-8B-Instruct layout', model: 'layouts/llama-3.1-8b-instruct', golden: 'cli-llama-3.1-8b-instruct', gateDir: 'llama-3.1-8b-instruct' },
  { name: 'gemma-3-12b-it layout (multimodal)', model: 'layouts/gemma-3-12b-it', golden: 'cli-gemma-3-12b-it', gateDir: 'gemma-3-12b-it' },
];

// The goldens come from tools/reference (part D/E: `python3 tools/reference/make_fixtures.py --out
// test/fixtures --only layouts,cli`, on a machine with transformers). Until they are generated these
// cases are skipped and say so; they are not counted as passing.
const missing = CASES.filter((c) => !existsSync(path.join(FIXTURES, 'golden', `${c.golden}.json`)));
if (missing.length) console.warn(`SKIPPED (goldens not generated yet): ${missing.map((c) => c.golden).join(', ')}`);

for (const c of CASES) {
  if (missing.includes(c)) {
    describe.skip(`${c.golden}: goldens not generated`, () => it('needs tools/reference part D/E', () => undefined));
    continue;
  }
  describe(`${c.name}: extract -> train -> export -> eval through the CLI`, () => {
    const g = golden(c.golden);
    const k = g.meta.kvzip ?? g.meta;
    const model = path.join(FIXTURES, c.model);
    const work = path.join(tmp, c.golden);
    const store = path.join(work, 'store');
    const gates = path.join(work, 'gates');
    const exported = path.join(work, 'export');

    it('extract: the store holds the reference scores and attention inputs', async () => {
      const r = fkz(['extract', '--model', model, '--template', 'qwen', '--data', path.join(tmp, 'doc'), '--min-doc-tokens', '1',
        '--max-doc-tokens', '100000', '--ten-k-count', 'all', '--cat-count', '0', '--prefill-chunk', String(k.prefill_chunk),
        '--score-chunk', String(k.score_chunk), '--threads', '1', '--out', store, '--json', ...(c.extra ?? []),
        // the part-A models hold 256 positions; the reference records that this run goes past them
        ...(g.meta.needs_allow_long_contexts ? ['--allow-long-contexts'] : [])]);
      expect(r.code, r.stderr).toBe(0);
      const m = await readManifest(store);
      expect(m.model.scoredLayers).toEqual(k.scored_layers);
      if (c.extra) expect(m.model.ropeOverride).toBe('yarn:4:32768');
      else expect(m.model.ropeOverride).toBeUndefined();
      const n: number = k.ctx_len;
      expect(m.totals.tokens).toBe(n);
      expect(k.chunks.length).toBeGreaterThan(1);
      expect(n % k.score_chunk).not.toBe(0);
      const H = m.model.H;
      const D = m.model.D;
      const scores = g.f32('kvzip.scores');
      const hidden = g.f32('kvzip.hidden');
      const bf16 = m.hiddenDtype === 'bfloat16';
      for (const [s, layer] of (k.scored_layers as number[]).entries()) {
        const chunks = [];
        for await (const chunk of readLayer(store, layer)) chunks.push(chunk);
        expect(chunks.length).toBe(1);
        const got = chunks[0]!;
        // the store keeps scores [T, H]; the reference [H, T]
        const want = new Float32Array(n * H);
        for (let h = 0; h < H; h++) for (let t = 0; t < n; t++) want[t * H + h] = scores[s * H * n + h * n + t]!;
        expect(maxAbsDiff(got.scores, want), `scores of layer ${layer}`).toBeLessThan(1e-4);
        const h32 = bf16 ? bf16ArrayToF32(got.hidden) : f16ArrayToF32(got.hidden);
        // within one rounding of the 16-bit store dtype, plus the 1e-4 that our fp32 graphs and the
        // reference's may differ by (the attention-input bound of the golden tests): near zero that
        // noise is many roundings (ratios up to 13 were seen without it)
        expect(maxHalfRoundingRatio(h32, hidden.subarray(s * n * D, (s + 1) * n * D), bf16 ? 7 : 10, 1e-4), `hidden of layer ${layer}`).toBeLessThan(1.01);
      }
    });

    it('train, then export pt / safetensors / onnx', () => {
      const t = fkz(['train', '--features', store, '--out', gates, '--steps', '20', '--batch', '32', '--threads', '1', '--json']);
      expect(t.code, t.stderr).toBe(0);
      for (const format of ['pt', 'safetensors', 'onnx']) {
        const r = fkz(['export', '--gates', gates, '--format', format, '--out', exported, '--json']);
        expect(r.code, `${format}: ${r.stderr}`).toBe(0);
      }
      const files = readdirSync(path.join(exported, c.gateDir));
      expect(files.filter((f) => /^q\d+_dim16_sink16\.(pt|safetensors|onnx)$/.test(f)).length, files.join(',')).toBe(3);
    });

    it('eval on a held-out text, with the trained gates and with the exported .pt', () => {
      const pt = readdirSync(path.join(exported, c.gateDir)).find((f) => f.endsWith('.pt'))!;
      for (const [which, gateFile] of [['train', gates], ['pt', path.join(exported, c.gateDir, pt)]] as const) {
        const out = path.join(work, `eval-${which}`);
        const r = fkz(['eval', '--model', model, '--gates', gateFile, '--data', path.join(tmp, 'heldout'), '--template', 'qwen',
          '--contexts', '1', '--min-context-tokens', '8', '--max-context-tokens', '200', '--prefill-chunk', String(k.prefill_chunk),
          '--score-chunk', String(k.score_chunk), '--ratios', '1,0.5', '--scorers', 'gates,kvzip', '--recon-chunk', '16',
          '--recon-chunks', '1', '--kv-pairs', '0', '--threads', '1', '--quiet', '--out', out, '--json', ...(c.extra ?? [])]);
        expect(r.code, `${which}: ${r.stderr}`).toBe(0);
        expect(existsSync(path.join(out, 'eval.json'))).toBe(true);
        const report = JSON.parse(r.stdout);
        expect(JSON.stringify(report)).toContain('gates');
      }
    });
  });
}
