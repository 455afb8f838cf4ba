// Hostile inputs, family "leftovers and silent outcomes": train never writes into the store (it
// may be read-only) and leaves no temp files; an incomplete store is trained with a warning;
// unreadable documents are reported; a run that yields no context fails instead of leaving a
// "complete" empty store, and the corrected command then works in the same folder.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTrainStore } from '../helpers/train-store.js';
import { modelDir } from '../helpers/golden.js';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile as writeGateSetFile } from '../../src/gate/gate-file.js';
import { mkdirSync } from 'node:fs';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-leftovers-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const TRAIN = ['--steps', '40', '--batch', '64', '--rank', '4', '--sinks', '4', '--eval-every', '20', '--threads', '1'];

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
/** Every path under `dir` with its size and mtime: proof that nothing was written there. */
function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).map((e) => {
    const p = path.join(e.parentPath, e.name);
    const st = statSync(p);
    return `${path.relative(dir, p)} ${st.size} ${st.mtimeMs}`;
  }).sort();
}

describe('train and the store', () => {
  it('writes nothing into the store and leaves no temp files in --out', async () => {
    const store = path.join(tmp, 'store');
    await writeTrainStore(store);
    const before = snapshot(store);
    const out = path.join(tmp, 'g');
    const r = fkz(['train', '--features', store, '--out', out, ...TRAIN]);
    expect(r.code, r.stderr).toBe(0);
    expect(snapshot(store)).toEqual(before);
    expect(readdirSync(out).filter((n) => n.includes('tmp') || n.endsWith('.onnx'))).toEqual([]);
    expect(existsSync(path.join(out, '.lock'))).toBe(false);
  });

  it('trains an incomplete store with a warning', async () => {
    const store = path.join(tmp, 'incomplete');
    await writeTrainStore(store, { incomplete: true });
    const r = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-inc'), ...TRAIN]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: .*incomplete: extraction is not complete \(2 context\(s\)/);
  });
});

describe('extract with nothing to extract', () => {
  it('reports unreadable documents, fails on zero contexts, and the corrected command then works', () => {
    const corpus = path.join(tmp, 'docs.jsonl');
    writeFileSync(corpus, Buffer.concat([
      Buffer.from('{"id": "a", "text": ""}\n'),
      Buffer.from('{"id": "b", "text": "'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n'),
      Buffer.from('{"id": "c", "text": "short text"}\n'),
    ]));
    const out = path.join(tmp, 'store-x');
    const common = ['extract', '--model', modelDir('qwen3'), '--out', out, '--cat-count', '0', '--threads', '1', '--prefill-chunk', '2048', '--score-chunk', '512', '--allow-long-contexts'];
    const r = fkz([...common, '--data', corpus, '--min-doc-tokens', '1000', '--max-doc-tokens', '5000', '--ten-k-count', '1', '--max-tokens', '5000']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/warning: skipped 2 document\(s\) of .*docs\.jsonl without usable text \(1 empty, 1 not valid UTF-8/);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/docs\.jsonl: no context could be built \(.*1 too short/);
    expect(JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')).complete).toBe(false);
    // the corrected command (another corpus) into the same folder is not refused
    const ok = fkz([...common, '--data', 'sotu', '--min-doc-tokens', '3000', '--max-doc-tokens', '9000', '--ten-k-count', '1', '--max-tokens', '9000', '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).manifest.complete).toBe(true);
  });
});

describe('eval', () => {
  it('leaves no fastkvzip-eval-gates-* folder in the temp directory', async () => {
    const gates = path.join(tmp, 'eval-gates');
    await writeGateSetFile(path.join(gates, 'gates.safetensors'), { ...makeGateSet({ D: 48, H: 2, G: 2, r: 4, S: 4, layers: [0, 1, 2], modelDtype: 'float32' }), meta: { model_id: 'tiny' } });
    const sysTmp = path.join(tmp, 'systmp');
    mkdirSync(sysTmp);
    const r = spawnSync(process.execPath, [BIN, 'eval', '--model', modelDir('qwen3'), '--gates', gates, '--data', 'sotu', '--contexts', '1', '--min-context-tokens', '100', '--max-context-tokens', '300',
      '--scorers', 'gates,window', '--ratios', '0.5', '--kv-pairs', '0', '--recon-chunks', '1', '--threads', '1', '--out', path.join(tmp, 'ev')], { env: { ...env, TMPDIR: sysTmp }, encoding: 'utf8', cwd: tmp });
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(sysTmp).filter((n) => n.startsWith('fastkvzip-eval-gates-'))).toEqual([]);
  });
});
