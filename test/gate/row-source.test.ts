// The training graph reads features straight from the store's shards: per layer, runs of
// shards are joined into blocks under an element limit (ONNX Runtime's CUDA kernels index with
// int32) and rows are picked from whichever block holds them. Whatever the blocking, the rows
// must be exactly the stored ones, in batch order.
import { describe, it, expect } from 'vitest';
import * as ort from 'onnxruntime-node';
import { Graph, encodeModel } from '../../src/onnx/builder.js';
import { prepareRows, type RowPiece } from '../../src/gate/graph.js';
import { Rng } from '../../src/util/random.js';

const cols = 3;
const shardRows = [5, 7, 4, 9]; // 25 positions
const layers = 2;

async function gatherWith(maxElements: number, idx: number[]) {
  const rng = new Rng(7);
  const g = new Graph('rows');
  const data: Float32Array[] = [];
  const pieces: RowPiece[][] = [];
  for (let l = 0; l < layers; l++) {
    const all = new Float32Array(25 * cols).map(() => rng.uniform(-0.5, 0.5));
    data.push(all);
    let start = 0;
    pieces.push(
      shardRows.map((rows, s) => {
        const name = g.rawInitializer(`x.${l}.${s}`, 'float32', [rows, cols], new Uint8Array(all.slice(start * cols, (start + rows) * cols).buffer));
        const p = { name, start, rows, cols };
        start += rows;
        return p;
      }),
    );
  }
  const read = prepareRows(g, { pieces }, maxElements);
  const input = g.input('idx', 'int64', ['B']);
  g.output(read(g, input), 'rows', 'float32', [layers, 'B', cols]);
  const session = await ort.InferenceSession.create(encodeModel(g));
  const out = await session.run({ idx: new ort.Tensor('int64', BigInt64Array.from(idx.map(BigInt)), [idx.length]) });
  return { got: out.rows!.data as Float32Array, data };
}

describe('prepareRows (features from shards)', () => {
  const idx = [24, 0, 5, 4, 11, 12, 16, 3, 20, 15];
  for (const [label, limit] of [
    ['one block per layer (shards joined)', 1e9],
    ['a block per one or two shards (rows selected across blocks)', 12 * cols],
    ['a block per shard', 9 * cols],
  ] as const) {
    it(`${label}: exactly the stored rows in batch order`, async () => {
      const { got, data } = await gatherWith(limit, idx);
      const want = new Float32Array(layers * idx.length * cols);
      for (let l = 0; l < layers; l++) idx.forEach((p, j) => want.set(data[l]!.subarray(p * cols, (p + 1) * cols), (l * idx.length + j) * cols));
      expect(Array.from(got)).toEqual(Array.from(want));
    });
  }

  it('refuses a single piece above the limit', () => {
    const g = new Graph('rows');
    expect(() => prepareRows(g, { pieces: [[{ name: 'a', start: 0, rows: 10, cols: 4 }]] }, 39)).toThrow(/exceeds 39 elements/);
  });
});
