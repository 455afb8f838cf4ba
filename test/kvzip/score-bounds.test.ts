// The reconstruction loop's Slice bounds and Pad amounts are read on the host by ONNX Runtime;
// every distinct device-computed one costs a synchronising copy per pass on CUDA. The scoring of
// all layers must share one set (session 4's profile found ≈ 8 per layer and pass).
import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import onnxProto from 'onnx-proto';
import { openModel } from '../../src/model/load.js';
import { ensureGraphs } from '../../src/onnx/index.js';
import { modelDir } from '../helpers/golden.js';
import { KVZIP_SCORINGS } from '../../src/onnx/kvzip-graph.js';

type Node = InstanceType<typeof onnxProto.onnx.NodeProto>;

describe('kvzip graph, reconstruction loop', () => {
  it.each(KVZIP_SCORINGS)('%s scoring: slices and pads every scored layer with one shared set of host-read bounds', (scoring) => {
    const model = openModel(modelDir('qwen3'));
    const files = ensureGraphs(model, { dtype: 'float32', kinds: ['kvzip'], cacheDir: mkdtempSync(path.join(os.tmpdir(), 'fkz-bounds-')), kvzipScoring: scoring });
    const graph = onnxProto.onnx.ModelProto.decode(readFileSync(files.paths.kvzip!)).graph!;
    const loops = graph.node!.filter((n) => n.opType === 'Loop');
    const body = loops.map((n) => n.attribute!.find((a) => a.name === 'body')!.g!).find((g) => g.name === 'repeat')!;
    const constants = new Set([...graph.initializer!.map((t) => t.name!), ...body.initializer!.map((t) => t.name!)]);
    const hostRead = new Set<string>();
    const add = (n: Node, inputs: number[]) => inputs.forEach((i) => n.input![i] && !constants.has(n.input![i]!) && hostRead.add(n.input![i]!));
    let slices = 0;
    for (const n of body.node!) {
      if (n.opType === 'Slice') (slices++, add(n, [1, 2]));
      if (n.opType === 'Pad') add(n, [1]);
    }
    expect(model.spec.scoredLayers.length).toBeGreaterThan(1);
    expect(slices).toBeGreaterThan(3 * model.spec.scoredLayers.length); // the keys' three slices per layer at least
    // the pass's own ids slice [R] plus the seven bound vectors of ScoreBounds, whatever the layer count
    expect(hostRead.size).toBeLessThanOrEqual(8);
  });
});
