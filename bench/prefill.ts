// ONNX Runtime prefill throughput: the `prefill` graph (chunked prefill with every scored layer's
// attention input captured; the KV cache stays on the device inside the run), random token ids.
//   tsx bench/prefill.ts --model DIR --device cuda --ctx 16384,65536 --chunk 16000 --out prefill-ort.json
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadModel, sessionFor } from '../src/runtime/model-session.js';
import { ort, parseDevice } from '../src/runtime/session.js';
import { prefillLayout } from '../src/kvzip/inputs.js';
import { Rng } from '../src/util/random.js';
import { AttnInputBuffers, attnInputFetches } from '../src/kvzip/attn-input-buffers.js';
import { kvzipAttnInputType } from '../src/onnx/kvzip-graph.js';

const { values: a } = parseArgs({ options: { model: { type: 'string' }, device: { type: 'string', default: 'cuda' }, ctx: { type: 'string', default: '16384,65536' }, chunk: { type: 'string', default: '16000' }, out: { type: 'string' }, profile: { type: 'string' }, kind: { type: 'string', default: 'prefill' } } });
const device = { device: parseDevice(a.device!) };
const t0 = Date.now();
const kind = a.kind as 'prefill' | 'prefill_bf16';
const m = await loadModel(a.model!, { device, kinds: [kind] });
const buildSeconds = (Date.now() - t0) / 1000;
const t1 = Date.now();
// --profile PREFIX: ONNX Runtime's per-node trace (summarise with bench/profile_summary.py)
const session = a.profile
  ? await (await import('../src/runtime/session.js')).createSession(m.graphs.paths[kind]!, device, { enableProfiling: true, profileFilePrefix: a.profile })
  : await sessionFor(m, kind, device);
const sessionSeconds = (Date.now() - t1) / 1000;
const spec = m.model.spec;
const rows = [];
for (const n of a.ctx!.split(',').map(Number)) {
  const layout = prefillLayout(n, Number(a.chunk));
  const rng = new Rng(n);
  const ids = new BigInt64Array(layout.chunks * layout.chunkLen).map(() => BigInt(rng.int(Math.min(150000, spec.vocabSize))));
  const feeds = {
    prefill_ids: new ort.Tensor('int64', ids, [layout.chunks, layout.chunkLen]),
    num_tokens: new ort.Tensor('int64', BigInt64Array.of(BigInt(n)), []),
    prefix_len: new ort.Tensor('int64', BigInt64Array.of(0n), []),
  };
  let seconds = 0;
  let outBytes = 0;
  // attention inputs go straight into host buffers reused across runs, as `extract` does
  const type = kvzipAttnInputType(m.dtype, kind === 'prefill_bf16');
  const buffers = new AttnInputBuffers(spec.scoredLayers.length, spec.hiddenSize, type);
  const into = buffers.take(n);
  for (let rep = 0; rep < 2; rep++) { // the first run warms up kernels and the memory arena
    const t = process.hrtime.bigint();
    const out = await session.run(feeds, attnInputFetches(into, n) as unknown as ort.InferenceSession.FetchesType);
    seconds = Number(process.hrtime.bigint() - t) / 1e9;
    outBytes = Object.values(out).reduce((s, v) => s + (v.data as ArrayBufferView).byteLength, 0);
    for (const v of Object.values(out)) v.dispose?.();
  }
  const row = {
    ctx: n, chunks: layout.chunks, chunkLen: layout.chunkLen, seconds: +seconds.toFixed(3), tokens_per_s: Math.round(n / seconds),
    host_to_device_bytes_per_token: +((ids.byteLength + 16) / n).toFixed(2),
    device_to_host_bytes_per_token: Math.round(outBytes / n),
    kv_cache_bytes_per_token_kept_on_device: 2 * spec.numLayers * spec.numKvHeads * spec.headDim * 2,
  };
  rows.push(row);
  console.log(JSON.stringify(row));
}
if (a.profile) (session as unknown as { endProfiling(): void }).endProfiling();
const result = { model: a.model, device: a.device, dtype: m.dtype, graph_build_seconds: buildSeconds, session_seconds: sessionSeconds, rss_gib: +(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2), prefill: rows };
if (a.out) writeFileSync(a.out, JSON.stringify(result, null, 2));
console.log(JSON.stringify(result));
