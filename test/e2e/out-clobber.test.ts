// Hostile inputs, family "existing files in --out": export, train, eval and extract never
// replace or delete files they cannot prove they wrote, unless --overwrite; a second train
// into the same folder waits for nobody: it is refused by the lock.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, rmSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile as writeGateSetFile } from '../../src/gate/gate-file.js';
import { writeTrainStore } from '../helpers/train-store.js';
import { modelDir } from '../helpers/golden.js';
import { readCheckpoint, writeCheckpoint } from '../../src/gate/checkpoint.js';
import { stepBlocks } from '../../src/gate/schedule.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-clobber-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const TRAIN = ['--steps', '40', '--batch', '64', '--rank', '4', '--sinks', '4', '--eval-every', '20', '--threads', '1'];
const store = path.join(tmp, 'store');
const gatesDir = path.join(tmp, 'gates');

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function refused(r: { code: number | null; stderr: string }, file: RegExp | string): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
  expect(lines).toHaveLength(1);
  if (typeof file === 'string') expect(lines[0]).toContain(file);
  else expect(lines[0]).toMatch(file);
  expect(lines[0]).toMatch(/--overwrite|choose an empty/);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
}

beforeAll(async () => {
  await writeTrainStore(store);
  const g = { ...makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } };
  await writeGateSetFile(path.join(gatesDir, 'gates.safetensors'), g);
});

describe('export', () => {
  it('keeps a README.md it did not write; replaces its own; --overwrite replaces anything', () => {
    const out = path.join(tmp, 'x');
    mkdirSync(out);
    writeFileSync(path.join(out, 'README.md'), 'my own notes');
    refused(fkz(['export', '--gates', gatesDir, '--out', out]), path.join(out, 'README.md'));
    expect(readFileSync(path.join(out, 'README.md'), 'utf8')).toBe('my own notes');
    expect(existsSync(path.join(out, 'qwen3-8b'))).toBe(false);
    expect(fkz(['export', '--gates', gatesDir, '--out', out, '--overwrite']).code).toBe(0);
    expect(readFileSync(path.join(out, 'README.md'), 'utf8')).not.toBe('my own notes');
    // ours and unchanged: a re-export (another format) may replace the card
    expect(fkz(['export', '--gates', gatesDir, '--out', out, '--format', 'safetensors']).code).toBe(0);
    // edited by the user since: refused again
    writeFileSync(path.join(out, 'README.md'), readFileSync(path.join(out, 'README.md'), 'utf8') + '\nmy edits\n');
    refused(fkz(['export', '--gates', gatesDir, '--out', out, '--format', 'onnx']), /README\.md: already exists .*changed since/);
  });
});

describe('train', () => {
  it('refuses a folder with foreign files; --overwrite deletes only its own names', () => {
    const out = path.join(tmp, 't-foreign');
    mkdirSync(out);
    writeFileSync(path.join(out, 'results.csv'), 'keep me');
    refused(fkz(['train', '--features', store, '--out', out, ...TRAIN]), out);
    const r = fkz(['train', '--features', store, '--out', out, ...TRAIN, '--overwrite']);
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(path.join(out, 'results.csv'), 'utf8')).toBe('keep me');
  });

  it('refuses to replace another run\'s gates; the same run resumes; the log has no duplicate rows', async () => {
    const out = path.join(tmp, 't-runs');
    expect(fkz(['train', '--features', store, '--out', out, ...TRAIN]).code).toBe(0);
    const gates = readFileSync(path.join(out, 'gates.safetensors'));
    refused(fkz(['train', '--features', store, '--out', out, ...TRAIN, '--seed', '7']), /another training run/);
    expect(readFileSync(path.join(out, 'gates.safetensors')).equals(gates)).toBe(true);
    // the state a kill leaves after logging step 20 but before checkpointing it: resume from step 1
    const ckpt = path.join(out, 'checkpoints', 'group-0.safetensors');
    const dims = { L: 3, D: 16, H: 2, G: 2, r: 4, S: 4 };
    const c = readCheckpoint(ckpt, dims);
    const nextBlock = stepBlocks(40, 20).findIndex((b) => b.start === 1);
    expect(nextBlock).toBeGreaterThan(0);
    await writeCheckpoint(ckpt, { ...c, nextBlock, metrics: c.metrics.slice(0, 1) }, dims);
    rmSync(path.join(out, 'summary.json')); // a killed run has written no summary (with one, the re-run is a no-op)
    const again = fkz(['train', '--features', store, '--out', out, ...TRAIN]);
    expect(again.stderr).toMatch(/resuming group 0 from step 1\b/);
    expect(again.code, again.stderr).toBe(0);
    const rows = readFileSync(path.join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const keys = rows.map((r) => `${r.group}/${r.layer}/${r.step}`);
    expect(new Set(keys).size).toBe(keys.length);
    expect(rows.length).toBe(3 * 2); // 3 layers x 2 evaluations
  });

  it('a second train into a folder in use is refused by the lock', async () => {
    const out = path.join(tmp, 't-lock');
    const first = spawn(process.execPath, [BIN, 'train', '--features', store, '--out', out, ...TRAIN, '--steps', '200000', '--eval-every', '100000'], { env, stdio: 'ignore' });
    try {
      for (let i = 0; i < 200 && !existsSync(path.join(out, 'checkpoints')) && !existsSync(path.join(out, '.train-tmp')); i++) await new Promise((r) => setTimeout(r, 100));
      expect(existsSync(path.join(out, '.lock'))).toBe(true);
      const r = fkz(['train', '--features', store, '--out', out, ...TRAIN]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`${out.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: in use by process ${first.pid}`));
    } finally {
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
    }
  });
});

describe('eval and extract', () => {
  it('eval refuses a foreign eval.md before doing any work', () => {
    const out = path.join(tmp, 'e');
    mkdirSync(out);
    writeFileSync(path.join(out, 'eval.md'), 'findings of last week');
    const t = Date.now();
    refused(fkz(['eval', '--model', modelDir('qwen3'), '--gates', gatesDir, '--data', 'sotu', '--out', out, '--contexts', '1']), path.join(out, 'eval.md'));
    expect(Date.now() - t).toBeLessThan(20_000);
    expect(readFileSync(path.join(out, 'eval.md'), 'utf8')).toBe('findings of last week');
  });

  it('extract refuses a folder that is not a store, and deletes nothing in it', () => {
    const out = path.join(tmp, 'not-a-store');
    mkdirSync(out);
    writeFileSync(path.join(out, '.draft.tmp-1-2'), 'an editor\'s temp file');
    writeFileSync(path.join(out, 'paper.tex'), 'text');
    const r = fkz(['extract', '--model', modelDir('qwen3'), '--data', 'sotu', '--out', out, '--ten-k-count', '1', '--cat-count', '0', '--min-doc-tokens', '1000', '--max-doc-tokens', '5000', '--max-tokens', '5000', '--threads', '1', '--allow-long-contexts']);
    refused(r, out);
    expect(readFileSync(path.join(out, '.draft.tmp-1-2'), 'utf8')).toBe('an editor\'s temp file');
    expect(existsSync(path.join(out, 'paper.tex'))).toBe(true);
  });
});
