// Peak memory of the KVzip graph on the CPU, in units of the full KV cache (issues 16/17): how many
// cache-sized buffers ONNX Runtime holds at once. A random Qwen3-like model whose KV cache dominates
// (8 KV heads x 128, tiny hidden size), random token ids, one process per (form, length) so each
// process's peak RSS is that run's. Each run is measured twice over:
//   - arena: ORT's default CPU BFC arena (the allocator the CUDA EP uses too), peak RSS above the
//     process's RSS before the run, and the arena's own total from its "Extended allocation" log lines;
//   - live (--no-arena): the arena off and glibc's mmap threshold fixed at 1 MiB, so every large
//     buffer is its own mmap and peak RSS is the planner's peak of live bytes.
//   tsx bench/kvzip_peak_memory.ts --ctx 4096,8192 --forms chunks,layers --out bench/results/x.json
// Prints one JSON line per run; --out writes them all with the machine and the model.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';

const { values: a } = parseArgs({
  options: {
    child: { type: 'boolean', default: false },
    model: { type: 'string' },
    ctx: { type: 'string', default: '4096,8192' },
    forms: { type: 'string', default: 'chunks,layers' },
    kind: { type: 'string', default: 'kvzip' },
    layers: { type: 'string', default: '4' },
    shape: { type: 'string', default: 'cache' },
    'prefill-chunk': { type: 'string', default: '2048' },
    'score-chunk': { type: 'string', default: '2000' },
    'keep-fraction': { type: 'string', default: '0.45' },
    arena: { type: 'string', default: 'on,off' },
    threads: { type: 'string', default: '1' },
    out: { type: 'string' },
  },
});

/**
 * Qwen3-shaped configs. 'cache': the KV cache dominates (8 KV heads x head_dim 128, the 8B's cache layout; hidden 128).
 * 'capture': the captured attention inputs dominate (hidden 2048 against 8 KV heads x 32), to see how many copies of
 * them the graph holds.
 */
function config(layers: number, shape: string): Record<string, unknown> {
  const dims = { cache: { hidden_size: 128, head_dim: 128 }, capture: { hidden_size: 2048, head_dim: 32 } }[shape];
  if (!dims) throw new Error(`--shape ${shape}: expected cache or capture`);
  return {
    architectures: ['Qwen3ForCausalLM'], model_type: 'qwen3', ...dims, intermediate_size: 256, num_hidden_layers: layers,
    num_attention_heads: 8, num_key_value_heads: 8, vocab_size: 512, rms_norm_eps: 1e-6, rope_theta: 1e6,
    max_position_embeddings: 131072, tie_word_embeddings: true, torch_dtype: 'bfloat16',
  };
}

async function makeModel(dir: string, layers: number, shape: string): Promise<void> {
  if (existsSync(path.join(dir, 'model.safetensors'))) return;
  const { parseModelConfig } = await import('../src/model/config.js');
  const { expectedWeights } = await import('../src/model/expected-weights.js');
  const { writeSafetensors } = await import('../src/model/safetensors/index.js');
  const { f32ToBf16Bits } = await import('../src/util/half.js');
  const { Rng } = await import('../src/util/random.js');
  mkdirSync(dir, { recursive: true });
  const cfg = config(layers, shape);
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg, null, 2));
  const spec = parseModelConfig(cfg);
  const rng = new Rng(7);
  const tensors = expectedWeights(spec).map((w) => {
    const n = w.shape.reduce((x, y) => x * y, 1);
    const norm = w.name.endsWith('norm.weight');
    const data = new Uint16Array(n).map(() => f32ToBf16Bits(norm ? 1 + 0.1 * (rng.next() - 0.5) : 0.2 * (rng.next() - 0.5)));
    return { name: w.name, dtype: 'BF16' as const, shape: w.shape, data };
  });
  await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
}

/** One run in this process: prints {rssBeforeKiB, peakRssKiB, cacheBytes, ...} as the last stdout line. */
async function child(): Promise<void> {
  const { ort } = await import('../src/runtime/session.js');
  const { loadModel, sessionFor } = await import('../src/runtime/model-session.js');
  const { kvzipFeeds, keepFeeds } = await import('../src/kvzip/inputs.js');
  const { feedsToTensors, scoreContext } = await import('../src/kvzip/score-context.js');
  const { AttnInputBuffers, attnInputFetches, targetArrays } = await import('../src/kvzip/attn-input-buffers.js');
  const { kvzipAttnInputType } = await import('../src/onnx/kvzip-graph.js');
  const { Rng } = await import('../src/util/random.js');
  ort.env.logLevel = 'info'; // the BFC arena's "Extended allocation by N bytes" lines (parsed by the parent)
  const n = Number(a.ctx);
  const kind = a.kind as 'kvzip' | 'kvzip_int8_keep' | 'prefill';
  const device = { device: 'cpu' as const, threads: Number(a.threads) };
  const m = await loadModel(a.model!, { device, kinds: [kind], requireTokenizer: false, log: () => undefined });
  const arena = a.arena !== 'off';
  const session = await sessionFor(m, kind, device, { enableCpuMemArena: arena, enableMemPattern: arena });
  const spec = m.model.spec;
  const rng = new Rng(n);
  const ids = Array.from({ length: n }, () => 3 + rng.int(spec.vocabSize - 3));
  const prompts = { prefixIds: [1, 2, 3, 4], postfixIds: [5, 6], repeatFirstIds: [7, 8, 9], repeatNextIds: [10, 11], prevPostfixTokens: 8 };
  const feeds = kvzipFeeds(ids, prompts, { prefillChunk: Number(a['prefill-chunk']), scoreChunk: Number(a['score-chunk']) });
  if (kind === 'kvzip_int8_keep') {
    const keep = Number(a['keep-fraction']);
    const kept = Int32Array.from({ length: n }, (_, i) => i).filter(() => rng.next() < keep);
    feeds.keep = keepFeeds(kept, feeds.prefixLen, feeds.prefillShape);
  }
  const all = feedsToTensors(feeds);
  // the attention inputs go straight into host buffers, as extract has them (no second copy of them on the JS side)
  const L = spec.scoredLayers.length;
  const type = kind === 'kvzip_int8_keep' ? 'int8' : kvzipAttnInputType(m.dtype, false);
  const into = new AttnInputBuffers(L, spec.hiddenSize, type, type === 'int8' ? 1 : 0).take(feeds.keep ? feeds.keep.index.length : feeds.numTokens - feeds.prefixLen);
  const rssBeforeKiB = process.resourceUsage().maxRSS;
  const rssNowKiB = Math.round(process.memoryUsage().rss / 1024);
  const t = process.hrtime.bigint();
  let scores: Float32Array[] = [];
  if (kind === 'prefill') {
    const out = await session.run({ prefill_ids: all.prefill_ids!, num_tokens: all.num_tokens!, prefix_len: all.prefix_len! }, attnInputFetches(into, into.arrays[0]!.length / spec.hiddenSize) as unknown as ort.InferenceSession.FetchesType);
    for (const v of Object.values(out)) v.dispose?.();
  } else {
    scores = (await scoreContext(session, feeds, L, spec.numKvHeads, into)).scores;
  }
  const seconds = Number(process.hrtime.bigint() - t) / 1e9;
  const peakRssKiB = process.resourceUsage().maxRSS;
  // a digest of the outputs, so forms can be compared bit for bit
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256');
  for (const d of [...scores, ...targetArrays(into)]) h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  // the captured attention inputs as the graph returns them (hidden.<s>, scale.<s>): what its scans hold
  const captureBytes = targetArrays(into).reduce((n, x) => n + x.byteLength, 0);
  const layersUsed = Math.max(...spec.scoredLayers) + 1;
  const cacheBytes = 2 * layersUsed * spec.numKvHeads * spec.headDim * 4 * feeds.numTokens; // fp32 K and V of every layer at N positions
  console.log(JSON.stringify({ rssBeforeKiB, rssNowKiB, peakRssKiB, cacheBytes, captureBytes, numTokens: feeds.numTokens, prefill: feeds.prefillShape, passes: feeds.passes.length, seconds, digest: h.digest('hex').slice(0, 16) }));
  await session.release();
}

async function parent(): Promise<void> {
  const layers = Number(a.layers);
  const modelDir = a.model ?? path.join(os.tmpdir(), `fkz-peakmem-qwen3-l${layers}${a.shape === 'cache' ? '' : `-${a.shape}`}`);
  await makeModel(modelDir, layers, a.shape!);
  const self = fileURLToPath(import.meta.url);
  const tsx = path.join(path.dirname(self), '..', 'node_modules', '.bin', 'tsx');
  const rows: Record<string, unknown>[] = [];
  for (const n of a.ctx!.split(',').map(Number)) {
    for (const form of a.forms!.split(',')) {
      for (const arena of a.arena!.split(',')) {
        // form: prefill order (chunks|layers), then "+layerpasses", "+gqaroom", "+hostbounds", "+fused" flags
        const [order, ...flags] = form.split('+');
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          FASTKVZIP_CACHE: path.join(modelDir, 'cache'),
          FASTKVZIP_KVZIP_PREFILL: order,
          FASTKVZIP_KVZIP_ROOM: flags.includes('gqaroom') ? 'gqa' : 'concat',
          FASTKVZIP_KVZIP_BOUNDS: flags.includes('hostbounds') ? 'host' : 'device',
          FASTKVZIP_KVZIP_SCORING: flags.includes('fused') ? 'fused' : 'classic',
          FASTKVZIP_KVZIP_PASS_ORDER: flags.includes('layerpasses') ? 'layers' : 'free',
        };
        if (arena === 'off') env.MALLOC_MMAP_THRESHOLD_ = String(1 << 20);
        const args = [self, '--child', '--model', modelDir, '--ctx', String(n), '--kind', a.kind!, '--prefill-chunk', a['prefill-chunk']!, '--score-chunk', a['score-chunk']!, '--keep-fraction', a['keep-fraction']!, '--arena', arena, '--threads', a.threads!];
        const r = spawnSync(tsx, args, { env, encoding: 'utf8', maxBuffer: 1 << 30 });
        if (r.status !== 0) throw new Error(`child failed (${form}, ${n}): ${r.stderr.split('\n').filter((l) => !/\[I:/.test(l)).slice(-40).join('\n')}`);
        const res = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
        // the arena's regions: "Extended allocation by N bytes." per region it adds (ORT's bfc_arena.cc, INFO)
        const extended = [...r.stderr.matchAll(/Extended allocation by (\d+) bytes/g)].map((x) => Number(x[1]));
        const C = res.cacheBytes as number;
        const row = {
          form, arena, ctx: n, kind: a.kind, shape: a.shape, layers, prefillChunk: Number(a['prefill-chunk']), ...res,
          peakAboveBeforeMiB: +((res.peakRssKiB - res.rssBeforeKiB) / 1024).toFixed(1),
          peakAboveNowCacheUnits: +(((res.peakRssKiB - res.rssNowKiB) * 1024) / C).toFixed(3),
          arenaRegions: extended.length,
          arenaTotalCacheUnits: extended.length ? +(extended.reduce((x, y) => x + y, 0) / C).toFixed(3) : null,
        };
        rows.push(row);
        console.log(JSON.stringify(row));
      }
    }
  }
  if (a.out) writeFileSync(a.out, JSON.stringify({ machine: `${os.cpus().length}-core ${os.cpus()[0]?.model}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`, model: config(layers, a.shape!), rows }, null, 2) + '\n');
}

await (a.child ? child() : parent());
