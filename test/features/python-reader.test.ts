// docs/feature-store.md's Python reader, run as written against stores fastkvzip writes (bf16 and
// fp16), must yield what our own reader yields. Needs a Python with pyarrow and numpy; without
// one the test says it skipped (.ci/run installs what Debian offers, which has no pyarrow).
import { describe, it, expect, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readLayer } from '../../src/features/index.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../src/util/half.js';
import { tempDir, writeStore, LAYERS } from './fixtures.js';
import type { AttnInputDtype } from '../../src/features/types.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const doc = readFileSync(path.join(ROOT, 'docs', 'feature-store.md'), 'utf8');
const reader = /```python\n([\s\S]*?)```/.exec(doc)![1]!;

const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import pyarrow, numpy'], { encoding: 'utf8' }).status === 0);
if (!python) console.warn('[feature store] Python reader test skipped: no python3 with pyarrow and numpy (pip install pyarrow numpy)');

const DRIVER = `
import json, sys
from reader import read_layer
out = []
for cid, hidden, score in read_layer(sys.argv[1], int(sys.argv[2])):
    out.append([cid, list(hidden.shape), hidden.view("uint32").ravel().tolist(), score.view("uint32").ravel().tolist()])
print(json.dumps(out))
`;

describe.skipIf(!python)('docs/feature-store.md Python reader', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const c of cleanups) await c();
  });
  for (const dtype of ['bfloat16', 'float16'] as AttnInputDtype[]) {
    it(`reads a ${dtype} store layer by layer like fastkvzip does`, async () => {
      const { dir, cleanup } = await tempDir('fkz-pyreader-');
      cleanups.push(cleanup);
      const store = path.join(dir, 'store');
      await writeStore(store, dtype);
      writeFileSync(path.join(dir, 'reader.py'), reader);
      writeFileSync(path.join(dir, 'driver.py'), DRIVER);
      // the block runs as a script too
      const asScript = spawnSync(python!, [path.join(dir, 'reader.py'), store, String(LAYERS[1])], { encoding: 'utf8' });
      expect(asScript.status, asScript.stderr).toBe(0);
      for (const layer of LAYERS) {
        const r = spawnSync(python!, [path.join(dir, 'driver.py'), store, String(layer)], { encoding: 'utf8', cwd: dir, maxBuffer: 1 << 26 });
        expect(r.status, r.stderr).toBe(0);
        const py = JSON.parse(r.stdout) as [string, number[], number[], number[]][];
        const ours = [];
        for await (const c of readLayer(store, layer)) ours.push(c);
        expect(py.map((x) => x[0])).toEqual(ours.map((c) => c.contextId));
        py.forEach(([, shape, hiddenBits, scoreBits], i) => {
          const c = ours[i]!;
          expect(shape).toEqual([c.tokens, c.hidden.length / c.tokens]);
          const f = dtype === 'bfloat16' ? bf16ArrayToF32(c.hidden) : f16ArrayToF32(c.hidden);
          const bits = new Uint32Array(f.buffer);
          for (let j = 0; j < f.length; j++) if (Number.isFinite(f[j]!)) expect(hiddenBits[j], `${c.contextId} hidden ${j}`).toBe(bits[j]);
          expect(scoreBits).toEqual([...new Uint32Array(Float32Array.from(c.scores).buffer)]);
        });
      }
    });
  }
});
