// The KVzip score's max over (repeat query, group member) rows is folded by MaxPool windows
// (ONNX Runtime's CUDA ReduceMax over a middle axis is slow); it must equal the plain max for
// any row count, including counts that do not divide the window and single rows.
import { describe, it, expect } from 'vitest';
import * as ort from 'onnxruntime-node';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { maxOverRows } from '../../src/onnx/kvzip-graph.js';
import { Rng } from '../../src/util/random.js';

describe('maxOverRows', async () => {
  const g = new Graph('max');
  const x = g.input('x', 'float32', [2, 'rows', 'K']);
  g.output(maxOverRows(g, x), 'y', 'float32', [2, 'K']);
  const session = await ort.InferenceSession.create(encodeModel(g));
  for (const rows of [1, 2, 63, 64, 65, 127, 4095, 4096, 4097, 9000]) {
    it(`${rows} rows`, async () => {
      const K = 3;
      const rng = new Rng(rows);
      const data = new Float32Array(2 * rows * K).map(() => rng.uniform(0, 1));
      // the winner sits at a random row; the last row must count too
      data[(1 * rows + rows - 1) * K + 2] = 2;
      const out = (await session.run({ x: new ort.Tensor('float32', data, [2, rows, K]) })).y!.data as Float32Array;
      const want = new Float32Array(2 * K).fill(-Infinity);
      for (let h = 0; h < 2; h++) for (let r = 0; r < rows; r++) for (let k = 0; k < K; k++) want[h * K + k] = Math.max(want[h * K + k]!, data[(h * rows + r) * K + k]!);
      expect(Array.from(out)).toEqual(Array.from(want));
    });
  }
});
