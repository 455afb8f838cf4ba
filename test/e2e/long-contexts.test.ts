// Contexts beyond the positions a model was trained on are refused by default, naming the
// context, the positions it needs, the model's limit and the fixes; --allow-long-contexts
// scores them on purpose. A recipe that is certain to exceed the limit (the 100k-token
// concatenated set on Qwen3's own 40,960 positions) is refused before any work.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { modelDir } from '../helpers/golden.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-long-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const fkz = (args: string[]) => {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};
const SOTU = path.join(ROOT, 'node_modules', '@stdlib', 'datasets-sotu', 'data', '1929_herbert_hoover_r.txt');

beforeAll(() => {
  mkdirSync(path.join(tmp, 'c'));
  writeFileSync(path.join(tmp, 'c', 'a.txt'), readFileSync(SOTU, 'utf8').slice(0, 2200));
});

const EXTRACT = ['extract', '--template', 'qwen', '--min-doc-tokens', '100', '--max-doc-tokens', '100000', '--ten-k-count', 'all',
  '--cat-count', '0', '--prefill-chunk', '256', '--score-chunk', '128', '--threads', '1'];

describe('contexts beyond the trained positions', () => {
  it('are refused by default with the context, its positions, the limit and the fixes; nothing is stored', () => {
    const out = path.join(tmp, 'refused');
    const r = fkz([...EXTRACT, '--model', modelDir('qwen3'), '--data', path.join(tmp, 'c'), '--out', out]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/context 10k-0000 \([\d,]+ tokens\) needs [\d,]+ positions/);
    expect(r.stderr).toMatch(/beyond the model's 256 trained positions \(max_position_embeddings\)/);
    expect(r.stderr).toMatch(/--rope-override yarn:4:32768/); // a Qwen3 model: the public RoPE setup is one of the fixes
    expect(r.stderr).toMatch(/--allow-long-contexts/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(existsSync(path.join(out, 'shards', '10k-0000.arrow'))).toBe(false);
  });

  it('--allow-long-contexts scores them, with a warning and the count in --json', () => {
    const r = fkz([...EXTRACT, '--model', modelDir('qwen3'), '--data', path.join(tmp, 'c'), '--out', path.join(tmp, 'allowed'), '--allow-long-contexts', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: 10k-0000 needs \d+ positions/);
    expect(JSON.parse(r.stdout).contexts.beyondMaxPositions).toBe(1);
  });

  it("the recipe's 100k-token concatenated set on Qwen3's own 40,960 positions is refused before any work", () => {
    const out = path.join(tmp, 'recipe');
    // the qwen3 fixture with Qwen3-8B's own position limit
    const model = path.join(tmp, 'qwen3-40960');
    cpSync(modelDir('qwen3'), model, { recursive: true });
    const cfg = JSON.parse(readFileSync(path.join(model, 'config.json'), 'utf8'));
    writeFileSync(path.join(model, 'config.json'), JSON.stringify({ ...cfg, max_position_embeddings: 40960 }));
    const r = fkz(['extract', '--model', model, '--data', path.join(tmp, 'c'), '--out', out, '--threads', '1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the concatenated contexts \(--cat-min-tokens 100000\) need at least [\d,]+ positions, beyond the model's 40,960 trained positions/);
    expect(r.stderr).toMatch(/--rope-override yarn:4:32768/);
    expect(existsSync(path.join(out, 'manifest.json'))).toBe(false);
  });
});
