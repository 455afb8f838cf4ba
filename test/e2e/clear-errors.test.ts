// Hostile inputs, family "machine and input faults": an --out that is a file, unwritable or too
// long, a full disk, a config with impossible sizes: one line naming the path and the problem,
// exit 1 or 2, never "internal error" with a stack trace, and nothing half-written left.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile as writeGateSetFile } from '../../src/gate/gate-file.js';
import { writeTrainStore } from '../helpers/train-store.js';
import { modelDir } from '../helpers/golden.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-clear-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const store = path.join(tmp, 'store');
const gatesDir = path.join(tmp, 'gates');
const file = path.join(tmp, 'a-file');

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function oneLine(r: { code: number | null; stderr: string }): string {
  expect(r.code, r.stderr).not.toBe(0);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
  expect(lines, r.stderr).toHaveLength(1);
  return lines[0]!;
}

beforeAll(async () => {
  await writeTrainStore(store);
  await writeGateSetFile(path.join(gatesDir, 'gates.safetensors'), { ...makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } });
  writeFileSync(file, 'a regular file');
});

const commands = (out: string): [string, string[]][] => [
  ['train', ['train', '--features', store, '--out', out, '--steps', '2', '--threads', '1']],
  ['export', ['export', '--gates', gatesDir, '--out', out]],
  ['eval', ['eval', '--model', modelDir('qwen3'), '--gates', gatesDir, '--data', 'sotu', '--out', out]],
  ['extract', ['extract', '--model', modelDir('qwen3'), '--data', 'sotu', '--out', out]],
  ['merge-features', ['merge-features', store, '--out', out]],
  ['run', ['run', '--config', 'ci', '--out', out]],
];

describe('--out that cannot be a folder', () => {
  for (const [name, args] of commands(file)) {
    it(`${name}: --out is a regular file`, () => {
      const line = oneLine(fkz(args));
      expect(line).toContain(file);
      expect(line).toMatch(/is a file, not a folder|a part of this path is a file|already exists/);
      expect(readFileSync(file, 'utf8')).toBe('a regular file');
    });
  }

  it('a file name too long (ENAMETOOLONG)', () => {
    const long = path.join(tmp, 'x'.repeat(300));
    for (const [, args] of commands(long).slice(0, 2)) {
      const r = fkz(args);
      expect(r.code).toBe(1);
      expect(oneLine(r)).toMatch(/file name too long \(ENAMETOOLONG/);
    }
  });

  it.skipIf(!existsSync('/sys/kernel'))('a folder that cannot be created (read-only or not permitted)', () => {
    const r = fkz(['export', '--gates', gatesDir, '--out', '/sys/kernel/fkz-out']);
    expect(r.code).toBe(1);
    expect(oneLine(r)).toMatch(/^fastkvzip: \/sys\/kernel\/fkz-out: (permission denied|operation not permitted|read-only file system)/);
  });
});

describe('a full disk (ENOSPC)', () => {
  const small = path.join(tmp, 'small-disk');
  let mounted = false;
  beforeAll(() => {
    // a 256 KiB tmpfs where the system lets us mount one (root in a container); skipped otherwise
    mkdirSync(small);
    mounted = process.platform === 'linux' && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', small]).status === 0;
  });
  afterAll(() => {
    if (mounted) spawnSync('umount', [small]);
  });

  it('export of gates larger than the disk: one line, exit 1, no partial files', async (ctx) => {
    if (!mounted) ctx.skip();
    const big = path.join(tmp, 'big-gates');
    await writeGateSetFile(path.join(big, 'gates.safetensors'), { ...makeGateSet({ D: 2048, H: 4, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } });
    for (const format of ['pt', 'safetensors', 'onnx']) {
      const out = path.join(small, format);
      const r = fkz(['export', '--gates', big, '--out', out, '--format', format]);
      expect(r.code, r.stderr).toBe(1);
      expect(oneLine(r)).toMatch(/no space left on the device \(ENOSPC/);
      const left = existsSync(path.join(out, 'qwen3-8b')) ? readdirSync(path.join(out, 'qwen3-8b')) : [];
      expect(left, format).toEqual([]);
    }
  });
});

describe('impossible model configs', () => {
  for (const [key, value] of [['num_hidden_layers', -1], ['hidden_size', 0], ['num_attention_heads', 2.5]] as const) {
    it(`${key}: ${value}`, () => {
      const dir = path.join(tmp, `model-${key}`);
      cpSync(modelDir('qwen3'), dir, { recursive: true });
      const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...c, [key]: value }));
      const line = oneLine(fkz(['generate', '--model', dir, '--prompt', 'x', '--max-new-tokens', '1']));
      expect(line).toContain(path.join(dir, 'config.json'));
      expect(line).toContain(`"${key}" must be a positive integer`);
    });
  }
});
