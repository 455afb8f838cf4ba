// Hostile inputs, family "corrupt or diverged data": nothing corrupt becomes gates. Flipped
// bytes in a shard, NaN features, exploding settings and bad gate files all stop with one line
// naming the file (or layer and step), a non-zero exit, and no gate file written.
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, readdirSync, writeSync, closeSync, statSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeTrainStore } from '../helpers/train-store.js';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile } from '../../src/gate/gate-file.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-integrity-'));
const env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
const TRAIN = ['--steps', '40', '--batch', '64', '--rank', '4', '--sinks', '4', '--eval-every', '20', '--threads', '1'];

function fkz(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', cwd: tmp });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
function oneLine(stderr: string): string {
  expect(stderr).not.toMatch(/internal error|\n\s+at /);
  const lines = stderr.split('\n').filter((l) => l.startsWith('fastkvzip:'));
  expect(lines, stderr).toHaveLength(1);
  return lines[0]!;
}

describe('train refuses corrupt or diverging data', () => {
  it('a healthy store trains (exit 0, finite gates)', async () => {
    await writeTrainStore(path.join(tmp, 'good'));
    const r = fkz(['train', '--features', path.join(tmp, 'good'), '--out', path.join(tmp, 'g-good'), ...TRAIN]);
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(path.join(tmp, 'g-good', 'gates.safetensors'))).toBe(true);
  });

  it('a flipped byte in a shard is caught by its sha256 before training', async () => {
    const store = path.join(tmp, 'flipped');
    await writeTrainStore(store);
    const shard = path.join(store, 'shards', readdirSync(path.join(store, 'shards')).sort()[1]!);
    const at = Math.floor(statSync(shard).size / 2); // inside the record batch bodies
    const fd = openSync(shard, 'r+');
    const b = Buffer.alloc(1);
    const cur = readFileSync(shard)[at]!;
    b[0] = cur ^ 0x10;
    writeSync(fd, b, 0, 1, at);
    closeSync(fd);
    const r = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-flipped'), ...TRAIN]);
    expect(r.code).toBe(1);
    const line = oneLine(r.stderr);
    expect(line).toContain(shard);
    expect(line).toMatch(/sha256 .*manifest records/);
    expect(existsSync(path.join(tmp, 'g-flipped', 'gates.safetensors'))).toBe(false);
  });

  it('a manifest listing a missing shard names it', async () => {
    const store = path.join(tmp, 'missing');
    await writeTrainStore(store);
    const shard = path.join(store, 'shards', readdirSync(path.join(store, 'shards')).sort()[0]!);
    (await import('node:fs')).rmSync(shard);
    const r = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-missing'), ...TRAIN]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(new RegExp(`${shard.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: missing`));
  });

  it('NaN features stop training with the layer and step, and no gates', async () => {
    const store = path.join(tmp, 'nan');
    await writeTrainStore(store, { nanRows: { context: 'c0000-10k', from: 0, to: 300 } });
    const r = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-nan'), ...TRAIN]);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/training diverged at step \d+: layer \d+ has a non-finite .*NaN\/Inf features/);
    expect(existsSync(path.join(tmp, 'g-nan', 'gates.safetensors'))).toBe(false);
  });

  it('an exploding learning rate stops with the layer and step; impossible settings are usage errors', async () => {
    const store = path.join(tmp, 'good-lr');
    await writeTrainStore(store);
    const r = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-lr'), ...TRAIN, '--lr', '1e30']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/training diverged at step \d+: layer \d+ has an exploding parameter/);
    expect(existsSync(path.join(tmp, 'g-lr', 'gates.safetensors'))).toBe(false);
    for (const [flag, value, msg] of [['--momentum', '5', /--momentum must be in \[0, 1\)/], ['--subsample', '0', /--subsample must be (a fraction|in \(0)/], ['--lr', '-1', /--lr must be (a )?positive/]] as const) {
      const u = fkz(['train', '--features', store, '--out', path.join(tmp, 'g-usage'), ...TRAIN, flag, value]);
      expect(u.code, `${flag} ${value}: ${u.stderr}`).toBe(2);
      expect(oneLine(u.stderr)).toMatch(msg);
    }
  });
});

/** Rewrite a safetensors header without one __metadata__ key (data offsets are relative to the header's end). */
function dropMetadataKey(file: string, key: string): void {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  delete header.__metadata__[key];
  const json = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, ' '));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(file, Buffer.concat([len, json, buf.subarray(8 + n)]));
}

describe('every export format validates the gates', () => {
  const cases: [string, (g: ReturnType<typeof makeGateSet>) => unknown, RegExp][] = [
    ['NaN parameters', (g) => (g.params[1]!['k_base'][3] = NaN, g), /non-finite value/],
    ['modelDtype int8', (g) => ({ ...g, modelDtype: 'int8' }), /model_dtype "int8" is unknown|unknown modelDtype int8/],
    ['metrics for the wrong number of layers', (g) => ({ ...g, metrics: { loss: [[1]], acc: [[1]], lossTrain: [[1]], accTrain: [[1]] } }), /metric_history\.loss is not a list of per-layer rows|metrics\.loss\[0\] must have one value per layer/],
    ['metadata without layers', (g) => ({ ...g, dropLayersMetadata: true }), /"layers" is not (a list|JSON)|no "layers" list/],
  ];
  for (const [name, damage, msg] of cases) {
    it(name, async () => {
      const dir = path.join(tmp, `bad-gates-${name.replace(/\W+/g, '-')}`);
      const g = { ...makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } };
      const damaged = damage(g) as typeof g & { dropLayersMetadata?: boolean };
      const file = path.join(dir, 'gates.safetensors');
      await writeGateFile(file, damaged, { validate: false });
      if (damaged.dropLayersMetadata) dropMetadataKey(file, 'layers');
      for (const format of ['pt', 'safetensors', 'onnx']) {
        const out = path.join(dir, `x-${format}`);
        const r = fkz(['export', '--gates', dir, '--format', format, '--out', out]);
        expect(r.code, `${format}: ${r.stderr}`).not.toBe(0);
        const line = oneLine(r.stderr);
        expect(line).toContain(path.join(dir, 'gates.safetensors'));
        expect(line).toMatch(msg);
        expect(existsSync(out)).toBe(false); // nothing written
      }
    });
  }
});
