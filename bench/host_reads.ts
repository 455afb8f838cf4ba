// Counts, in a built KVzip graph, the bounds ONNX Runtime's CUDA EP would copy from the device to
// the host (src/onnx/host-reads.ts: Slice/Pad/Reshape/Expand/Range/GQA-length inputs computed by
// device nodes; each a synchronising MemcpyToHost per execution of its graph), per variant of the
// graph, and per context for a number of prefill chunks and reconstruction passes. CPU only: the
// proxy for the GPU profile's MemcpyToHost count (issue 17).
//   tsx bench/host_reads.ts --model data/default-model --variants classic,classic+hostbounds,classic+hostbounds+gqaroom --passes 10 --prefill-chunks 2
//   tsx bench/host_reads.ts --layout qwen3-8b   (Qwen3-8B's layers and heads, tiny zero weights: the graph's structure only)
//   tsx bench/host_reads.ts --onnx path/to/kvzip.onnx
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import { openModel } from '../src/model/load.js';
import { ensureGraphs, writeModelGraphs } from '../src/onnx/index.js';
import { parseModelConfig } from '../src/model/config.js';
import { expectedWeights } from '../src/model/expected-weights.js';
import { hostReads, type HostReadReport } from '../src/onnx/host-reads.js';
import type { KvzipScoring, KvzipBounds, KvzipRoom } from '../src/onnx/kvzip-graph.js';
import type { ComputeDType } from '../src/onnx/weights.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'data/default-model' },
    layout: { type: 'string' },
    onnx: { type: 'string', multiple: true },
    variants: { type: 'string', default: 'classic,classic+hostbounds,fused,fused+hostbounds' },
    dtype: { type: 'string', default: 'bfloat16' },
    passes: { type: 'string', default: '10' },
    'prefill-chunks': { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
/** Real layer and head counts with a tiny hidden size: the host reads depend on those counts only. */
const LAYOUTS: Record<string, Record<string, unknown>> = {
  'qwen3-8b': {
    model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], hidden_size: 64, num_hidden_layers: 36, num_attention_heads: 32,
    num_key_value_heads: 8, head_dim: 128, intermediate_size: 32, vocab_size: 64, rms_norm_eps: 1e-6, rope_theta: 1e6,
    tie_word_embeddings: false, max_position_embeddings: 40960,
  },
};
const [passes, prefillChunks] = [Number(a.passes), Number(a['prefill-chunks'])];
const perRun = (g: string) => (g === 'repeat' ? passes : g === 'prefill' ? prefillChunks : 1);

const files: [string, string][] = [];
let tmp: string | undefined;
if (a.onnx?.length) for (const f of a.onnx) files.push([path.basename(f), f]);
else {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-host-reads-'));
  const kind = a.dtype === 'bfloat16' ? 'kvzip_bf16' : 'kvzip';
  const layout = a.layout ? LAYOUTS[a.layout] : undefined;
  if (a.layout && !layout) throw new Error(`--layout ${a.layout}: expected one of ${Object.keys(LAYOUTS).join(', ')}`);
  const model = layout ? undefined : openModel(a.model!);
  for (const v of a.variants!.split(',')) {
    const [scoring, ...flags] = v.split('+');
    const bounds: KvzipBounds = flags.includes('hostbounds') ? 'host' : 'device';
    const room: KvzipRoom = flags.includes('gqaroom') ? 'gqa' : 'concat';
    if (layout) {
      // the graph's structure only: tiny zero weights of the layout's layer and head counts
      const spec = parseModelConfig(layout, `${a.layout}/config.json`);
      const source = { has: () => true, shape: (n: string) => shapes.get(n)!, readF32: (n: string) => new Float32Array(shapes.get(n)!.reduce((x, y) => x * y, 1)) };
      const shapes = new Map(expectedWeights(spec).map((w) => [w.name, w.shape]));
      const built = writeModelGraphs(path.join(tmp, v), spec, source, a.dtype as ComputeDType, [kind], { scoring: scoring as KvzipScoring, bounds, room });
      files.push([v, built.paths[kind]!]);
      continue;
    }
    const built = ensureGraphs(model!, { dtype: a.dtype as ComputeDType, kinds: [kind], cacheDir: tmp, kvzipScoring: scoring as KvzipScoring, kvzipBounds: bounds, kvzipRoom: room });
    files.push([v, built.paths[kind]!]);
  }
}
const rows: Record<string, { graphs: HostReadReport[]; per_context: number }> = {};
for (const [label, file] of files) {
  const graphs = hostReads(onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!);
  const perContext = graphs.reduce((s, g) => s + g.deviceToHost * perRun(g.graph), 0);
  rows[label] = { graphs, per_context: perContext };
  console.error(`${label} (${path.basename(file)}): device->host bound copies per context ${perContext} (${passes} passes, ${prefillChunks} prefill chunks)`);
  for (const g of graphs)
    console.error(
      `  ${g.graph.padEnd(18)} per run: ${String(g.deviceToHost).padStart(3)} copies ${JSON.stringify(g.readers)}; host-read inputs not constant: ${g.dynamicHostInputs}; nodes kept on the CPU: ${g.cpuNodes}; data copies to CPU-only ops: ${g.dataToHost}; host values copied to the device: ${g.hostToDevice}`,
    );
}
if (tmp) rmSync(tmp, { recursive: true, force: true });
const result = { bench: 'host-reads', model: a.onnx?.length ? null : a.model, dtype: a.dtype, passes, prefill_chunks: prefillChunks, variants: rows, date: new Date().toISOString(), command: `tsx bench/host_reads.ts ${process.argv.slice(2).join(' ')}` };
if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
