// End to end on CPU with a tiny fixture model and real SOTU text: extract -> a store that the
// reader opens layer by layer -> train -> export; kill-and-resume gives the same store as an
// uninterrupted run; two trainings with the same seed give byte-identical gates.
import { describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from '../helpers/golden.js';
import { readManifest, readLayer, verifyStore } from '../../src/features/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-e2e-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const EXTRACT = ['extract', '--model', modelDir('qwen3'), '--data', 'sotu', '--min-doc-tokens', '3000', '--max-doc-tokens', '9000',
  '--ten-k-count', '3', '--cat-count', '1', '--cat-min-tokens', '9000', '--max-tokens', '40000', '--prefill-chunk', '2048', '--score-chunk', '512', '--threads', '1',
  // the fixture model was trained on 256 positions; these SOTU contexts exercise the store, not the model
  '--allow-long-contexts'];

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

describe('extract -> store -> train -> export (CPU, tiny model, SOTU)', () => {
  const store = path.join(tmp, 'store');
  it('extract writes a complete store with a full manifest', () => {
    const r = fkz([...EXTRACT, '--out', store, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.contexts.done).toBe(4);
    expect(s.manifest.complete).toBe(true);
    expect(s.hostMalloc).toBe('default'); // the re-run is for --device cuda
  });

  it('the reader opens it layer by layer with the documented shapes', async () => {
    const m = await readManifest(store);
    expect(m.model.scoredLayers).toEqual([0, 1, 2]);
    expect(m.recipe.template).toBeDefined();
    expect(m.extract.scoreDtype).toBe('float32');
    expect(m.shards.every((s) => /^[0-9a-f]{64}$/.test(s.sha256))).toBe(true);
    for (const layer of m.model.scoredLayers) {
      let tokens = 0;
      for await (const c of readLayer(store, layer)) {
        expect(c.hidden.length).toBe(c.tokens * m.model.D); // [ctx_len, D]
        expect(c.scores.length).toBe(c.tokens * m.model.H); // [ctx_len, H] (= [H, ctx_len] transposed)
        expect(c.scores.every((v) => v >= 0 && v <= 1)).toBe(true);
        tokens += c.tokens;
      }
      expect(tokens).toBe(m.totals.tokens);
    }
    expect((await verifyStore(store)).ok).toBe(true);
  });

  it('train + export (pt, safetensors, onnx) from the store; same seed gives identical files', () => {
    const args = ['train', '--features', store, '--steps', '120', '--batch', '256', '--threads', '1'];
    expect(fkz([...args, '--out', path.join(tmp, 'g1')]).code).toBe(0);
    expect(fkz([...args, '--out', path.join(tmp, 'g2')]).code).toBe(0);
    expect(sha(path.join(tmp, 'g1', 'gates.safetensors'))).toBe(sha(path.join(tmp, 'g2', 'gates.safetensors')));
    for (const format of ['pt', 'safetensors', 'onnx']) {
      const r = fkz(['export', '--gates', path.join(tmp, 'g1'), '--format', format, '--out', path.join(tmp, 'x1'), '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(fkz(['export', '--gates', path.join(tmp, 'g2'), '--format', format, '--out', path.join(tmp, 'x2')]).code).toBe(0);
    }
    const files = readdirSync(path.join(tmp, 'x1', 'qwen3'));
    expect(files).toEqual(expect.arrayContaining(['q2_dim16_sink16.pt', 'q2_dim16_sink16.safetensors', 'q2_dim16_sink16.onnx']));
    // the gate files are byte-identical (the model cards differ only in the recorded wall time)
    for (const f of files.filter((f) => f !== 'README.md')) expect(sha(path.join(tmp, 'x1', 'qwen3', f)), f).toBe(sha(path.join(tmp, 'x2', 'qwen3', f)));
  });

  it('the export names the local model by its folder, never its path; the card covers every format', async () => {
    const card = readFileSync(path.join(tmp, 'x1', 'README.md'), 'utf8');
    expect(card).not.toContain(tmp);
    expect(card).not.toContain(ROOT);
    expect(card).toContain('# Fast KVzip gates for qwen3');
    for (const h of ['### PyTorch', '### safetensors', '### ONNX']) expect(card).toContain(h);
    expect(card).not.toContain('Rounding the projections'); // a float32 model: the .pt keeps fp32 too
    // for a bf16 model the card states the measured effect of the .pt's bf16 projections
    const { readGateFile: readGateSetFile } = await import('../../src/gate/gate-file.js');
    const { measurePrecisionGap } = await import('../../src/export/precision-gap.js');
    const gap = await measurePrecisionGap({ ...readGateSetFile(path.join(tmp, 'g1', 'gates.safetensors')), modelDtype: 'bfloat16' }, store);
    expect(gap!.tokens).toBe(512);
    expect(gap!.maxAbs).toBeGreaterThan(0);
    expect(gap!.maxAbs).toBeLessThan(1e-2);
    expect(gap!.top30Agreement).toBeGreaterThan(0.95);
    const { openSafetensors } = await import('../../src/model/safetensors/index.js');
    const meta = openSafetensors(path.join(tmp, 'x1', 'qwen3', 'q2_dim16_sink16.safetensors')).metadata;
    expect(meta.model_id).toBe('qwen3');
    expect(JSON.stringify(meta)).not.toContain(tmp);
  });

  it('re-running a finished training changes nothing (summary, timing, card)', () => {
    const summary = readFileSync(path.join(tmp, 'g1', 'summary.json'), 'utf8');
    const gates = sha(path.join(tmp, 'g1', 'gates.safetensors'));
    const r = fkz(['train', '--features', store, '--steps', '120', '--batch', '256', '--threads', '1', '--out', path.join(tmp, 'g1')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/already finished/);
    expect(r.stdout).toMatch(/^trained 3 gate layer\(s\)/); // the human summary goes to stdout, progress to stderr
    // --no-resume refuses an output folder that holds a training (as extract --no-resume does a store)
    const refused = fkz(['train', '--features', store, '--steps', '120', '--batch', '256', '--threads', '1', '--out', path.join(tmp, 'g1'), '--no-resume']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds an earlier training .*--restart/);
    expect(readFileSync(path.join(tmp, 'g1', 'summary.json'), 'utf8')).toBe(summary);
    expect(sha(path.join(tmp, 'g1', 'gates.safetensors'))).toBe(gates);
    const card = readFileSync(path.join(tmp, 'x1', 'README.md'), 'utf8');
    expect(fkz(['export', '--gates', path.join(tmp, 'g1'), '--format', 'onnx', '--out', path.join(tmp, 'x1')]).code).toBe(0);
    expect(readFileSync(path.join(tmp, 'x1', 'README.md'), 'utf8')).toBe(card);
  });

  it('kill -9 during extraction, then rerun: the store is identical to an uninterrupted one', async () => {
    const killed = path.join(tmp, 'killed');
    const child = spawn(process.execPath, [BIN, ...EXTRACT, '--out', killed], { env, cwd: tmp, stdio: 'ignore' });
    // kill as soon as the first shard is recorded (mid-run: more contexts follow)
    await new Promise<void>((resolve, reject) => {
      const t = setInterval(() => {
        try {
          const m = existsSync(path.join(killed, 'manifest.json')) ? JSON.parse(readFileSync(path.join(killed, 'manifest.json'), 'utf8')) : null;
          if (m && m.shards.length >= 1) {
            clearInterval(t);
            child.kill('SIGKILL'); // resolved by the 'exit' handler once the process is reaped
          }
        } catch {
          /* manifest being replaced */
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(t);
        resolve();
      });
      setTimeout(() => reject(new Error('extraction did not start')), 60_000);
    });
    const partial = await readManifest(killed);
    expect(partial.complete).toBe(false);
    expect(partial.shards.length).toBeLessThan(4);
    const r = fkz([...EXTRACT, '--out', killed, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const a = await readManifest(store);
    const b = await readManifest(killed);
    expect(b.complete).toBe(true);
    expect(b.shards.map((s) => [s.contextId, s.tokens, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.tokens, s.sha256]));
  });
});

describe('sharded extraction and training resume', () => {
  const store = path.join(tmp, 'store'); // written by the first describe block (same file, sequential)

  it('extract --shard 0/2 and 1/2, merged, equal the single-run store', async () => {
    for (const part of ['0/2', '1/2']) {
      const r = fkz([...EXTRACT, '--shard', part, '--out', path.join(tmp, `part${part[0]}`)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const r = fkz(['merge-features', path.join(tmp, 'part0'), path.join(tmp, 'part1'), '--out', path.join(tmp, 'merged'), '--verify', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).verified).toBe(true);
    const a = await readManifest(store);
    const b = await readManifest(path.join(tmp, 'merged'));
    expect(b.shards.map((s) => [s.contextId, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.sha256]));
  });

  it('extract --runners 2 --writers 3 (two sessions in worker threads, parallel writers) equals the single-runner store', async () => {
    const out = path.join(tmp, 'runners2');
    const r = fkz([...EXTRACT, '--runners', '2', '--writers', '3', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).time.writers).toBe(3);
    const a = await readManifest(store);
    const b = await readManifest(out);
    expect(b.shards.map((s) => [s.contextId, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.sha256]));
  });

  it('extract re-run with glibc keeping freed blocks (FASTKVZIP_HOST_MALLOC=on; automatic with --device cuda) writes the same store', async () => {
    const run = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { env: { ...env, FASTKVZIP_HOST_MALLOC: 'on' }, encoding: 'utf8', cwd: tmp });
    const out = path.join(tmp, 'malloc');
    const r = run([...EXTRACT, '--out', out, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).hostMalloc).toBe('reuse');
    const a = await readManifest(store);
    const b = await readManifest(out);
    expect(b.shards.map((s) => [s.contextId, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.sha256]));
    // a failing run's message and exit code come through the re-run
    const bad = run([...EXTRACT, '--data', path.join(tmp, 'missing.jsonl'), '--out', path.join(tmp, 'malloc-bad')]);
    expect(bad.status).toBe(1); // a missing input file is a runtime failure (exit codes: README)
    expect(bad.stderr).toContain('missing.jsonl');
  });

  it('Ctrl-C (SIGINT to the parent) stops the re-run gracefully with 130, and a rerun completes the same store', async () => {
    const out = path.join(tmp, 'malloc-int');
    const menv = { ...env, FASTKVZIP_HOST_MALLOC: 'on' };
    const child = spawn(process.execPath, [BIN, ...EXTRACT, '--out', out], { env: menv, cwd: tmp, stdio: 'ignore' });
    const code = await new Promise<number | null>((resolve) => {
      const t = setInterval(() => {
        if (existsSync(path.join(out, 'manifest.json'))) {
          clearInterval(t);
          child.kill('SIGINT');
        }
      }, 10);
      child.on('exit', (c) => {
        clearInterval(t);
        resolve(c);
      });
    });
    expect(code).toBe(130);
    expect((await readManifest(out)).complete).toBe(false);
    const r = spawnSync(process.execPath, [BIN, ...EXTRACT, '--out', out, '--json'], { env: menv, encoding: 'utf8', cwd: tmp });
    expect(r.status, r.stderr).toBe(0);
    const a = await readManifest(store);
    const b = await readManifest(out);
    expect(b.shards.map((s) => [s.contextId, s.sha256])).toEqual(a.shards.map((s) => [s.contextId, s.sha256]));
  });

  it('a training killed after a checkpoint resumes to the same final gates', async () => {
    const args = ['train', '--features', store, '--steps', '400', '--batch', '256', '--threads', '1', '--eval-every', '50'];
    const full = path.join(tmp, 'train-full');
    expect(fkz([...args, '--out', full]).code).toBe(0);
    const cut = path.join(tmp, 'train-cut');
    const child = spawn(process.execPath, [BIN, ...args, '--out', cut, '--checkpoint-every', '0'], { env, cwd: tmp, stdio: 'ignore' });
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (existsSync(path.join(cut, 'checkpoints', 'group-0.safetensors'))) {
          clearInterval(t);
          child.kill('SIGKILL');
        }
      }, 10);
      child.on('exit', () => {
        clearInterval(t);
        resolve();
      });
    });
    expect(existsSync(path.join(cut, 'gates.safetensors'))).toBe(false); // really interrupted
    const r = fkz([...args, '--out', cut]);
    expect(r.code, r.stderr).toBe(0);
    expect(sha(path.join(cut, 'gates.safetensors'))).toBe(sha(path.join(full, 'gates.safetensors')));
  });
});
