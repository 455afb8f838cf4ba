// Counts, in a built KVzip graph, the bounds ONNX Runtime's CUDA EP would copy from the device to
// the host (src/onnx/host-reads.ts: Slice/Pad/Reshape/Expand/Range/GQA-length inputs computed by
// device nodes; each a synchronising MemcpyToHost per execution of its graph), per variant of the
// graph, and per context for a number of prefill chunks and reconstruction passes. CPU only: the
// proxy for the GPU profile's MemcpyToHost count (issue 17).
//   tsx bench/host_reads.ts --model data/default-model --variants classic,classic+hostbounds --passes 10 --prefill-chunks 2
//   tsx bench/host_reads.ts --onnx path/to/kvzip.onnx
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import onnxProto from 'onnx-proto';
import { openModel } from '../src/model/load.js';
import { ensureGraphs } from '../src/onnx/index.js';
import { hostReads, type HostReadReport } from '../src/onnx/host-reads.js';
import type { KvzipScoring, KvzipBounds } from '../src/onnx/kvzip-graph.js';
import type { ComputeDType } from '../src/onnx/weights.js';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'data/default-model' },
    onnx: { type: 'string', multiple: true },
    variants: { type: 'string', default: 'classic,classic+hostbounds,fused,fused+hostbounds' },
    dtype: { type: 'string', default: 'bfloat16' },
    passes: { type: 'string', default: '10' },
    'prefill-chunks': { type: 'string', default: '2' },
    out: { type: 'string' },
  },
});
const [passes, prefillChunks] = [Number(a.passes), Number(a['prefill-chunks'])];
const perRun = (g: string) => (g === 'repeat' ? passes : g === 'prefill' ? prefillChunks : 1);

const files: [string, string][] = [];
let tmp: string | undefined;
if (a.onnx?.length) for (const f of a.onnx) files.push([path.basename(f), f]);
else {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-host-reads-'));
  const model = openModel(a.model!);
  const kind = a.dtype === 'bfloat16' ? 'kvzip_bf16' : 'kvzip';
  for (const v of a.variants!.split(',')) {
    const [scoring, ...flags] = v.split('+');
    const bounds: KvzipBounds = flags.includes('hostbounds') ? 'host' : 'device';
    const built = ensureGraphs(model, { dtype: a.dtype as ComputeDType, kinds: [kind], cacheDir: tmp, kvzipScoring: scoring as KvzipScoring, kvzipBounds: bounds });
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
      `  ${g.graph.padEnd(18)} per run: ${String(g.deviceToHost).padStart(3)} copies ${JSON.stringify(g.readers)}; host-read inputs not constant: ${g.dynamicHostInputs}; nodes kept on the CPU: ${g.cpuNodes}; data copies to CPU-only ops: ${g.dataToHost}`,
    );
}
if (tmp) rmSync(tmp, { recursive: true, force: true });
const result = { bench: 'host-reads', model: a.onnx?.length ? null : a.model, dtype: a.dtype, passes, prefill_chunks: prefillChunks, variants: rows, date: new Date().toISOString(), command: `tsx bench/host_reads.ts ${process.argv.slice(2).join(' ')}` };
if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2) + '\n');
