// Hostile inputs, family "merge-features": --verify on a corrupt part exits 1 with one line
// naming the bad shard, and writes no merged store.
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTrainStore, TRAIN_CONTEXTS } from '../helpers/train-store.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-merge-verify-'));
const env = { ...process.env, HF_HUB_OFFLINE: '1' };

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  await writeTrainStore(path.join(tmp, 'a'), { contexts: [TRAIN_CONTEXTS[0]!] });
  await writeTrainStore(path.join(tmp, 'b'), { contexts: [TRAIN_CONTEXTS[1]!] });
});

describe('merge-features --verify', () => {
  it('merges healthy stores (exit 0)', () => {
    const r = fkz(['merge-features', path.join(tmp, 'a'), path.join(tmp, 'b'), '--out', path.join(tmp, 'ok'), '--verify']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/checksums verified/);
  });

  // Skipped after the merge of issues 13, 14 and 16 as "the error line is not found". The code was
  // never at fault (this test passes alone at that merge and at the commits before it); the
  // failing runs were full-suite runs in which fourteen test files each ran tsc into dist/ while
  // other files' CLIs imported it (fixed by test/setup/build-once.ts). The part's shard is now
  // taken from its manifest rather than the first directory entry.
  it('a flipped byte in a part: exit 1, the shard named in one line, no merged manifest', () => {
    const manifest = JSON.parse(readFileSync(path.join(tmp, 'b', 'manifest.json'), 'utf8'));
    const shard = path.join(tmp, 'b', manifest.shards[0].file);
    const at = Math.floor(statSync(shard).size / 2);
    const fd = openSync(shard, 'r+');
    writeSync(fd, Buffer.from([readFileSync(shard)[at]! ^ 0x01]), 0, 1, at);
    closeSync(fd);
    for (const json of [[], ['--json']]) {
      const out = path.join(tmp, `bad${json.length}`);
      const r = fkz(['merge-features', path.join(tmp, 'a'), path.join(tmp, 'b'), '--out', out, '--verify', ...json]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toContain(shard);
      expect(lines[0]).toMatch(/sha256 is [0-9a-f]+, the manifest records/);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(existsSync(path.join(out, 'manifest.json'))).toBe(false);
      expect(existsSync(out)).toBe(false); // checked before anything is created
    }
  });
});
