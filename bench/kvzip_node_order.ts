// Which order ONNX Runtime runs a KVzip graph's Loop bodies in, on the Qwen3-8B layout (36 layers, 32/8 heads,
// d 128; tiny hidden size and constant weights: the graph's structure only), CPU profile of one short context:
// how many of the 'concat' rooms (a copy of a layer's cache each) run before layer 0's attention, and where the
// first score node runs. Default forms, then the memory forms (FASTKVZIP_KVZIP_PREFILL=layers, _PASS_ORDER=layers).
//   tsx bench/kvzip_node_order.ts
import { writeModelGraphs } from '../src/onnx/write-graphs.js';
import { parseModelConfig } from '../src/model/config.js';
import { expectedWeights } from '../src/model/expected-weights.js';
import { createSession } from '../src/runtime/session.js';
import { kvzipFeeds } from '../src/kvzip/inputs.js';
import { feedsToTensors } from '../src/kvzip/score-context.js';
import onnxProto from 'onnx-proto';
import { readFileSync, mkdtempSync, readdirSync } from 'node:fs';
import * as os from 'node:os'; import * as path from 'node:path';
const layout = { model_type: 'qwen3', architectures: ['Qwen3ForCausalLM'], hidden_size: 64, num_hidden_layers: 36, num_attention_heads: 32,
    num_key_value_heads: 8, head_dim: 128, intermediate_size: 32, vocab_size: 64, rms_norm_eps: 1e-6, rope_theta: 1e6,
    tie_word_embeddings: false, max_position_embeddings: 40960, torch_dtype: 'bfloat16' };
const spec = parseModelConfig(layout, 'x/config.json');
const shapes = new Map(expectedWeights(spec).map((w) => [w.name, w.shape]));
const source = { has: () => true, shape: (n: string) => shapes.get(n)!, readF32: (n: string) => new Float32Array(shapes.get(n)!.reduce((x, y) => x * y, 1)).fill(0.01) };
const feeds = kvzipFeeds(Array.from({ length: 300 }, (_, i) => 1 + (i % 60)), { prefixIds: [1, 2], postfixIds: [3], repeatFirstIds: [4], repeatNextIds: [5], prevPostfixTokens: 2 }, { prefillChunk: 100, scoreChunk: 150 });
for (const passOrder of ['free', 'layers'] as const) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hoist-'));
  const built = writeModelGraphs(dir, spec, source, 'float32', ['kvzip'], { passOrder, prefill: passOrder === 'layers' ? 'layers' : 'chunks' });
  const file = built.paths.kvzip!;
  const prof = mkdtempSync(path.join(os.tmpdir(), 'hoistp-'));
  const s = await createSession(file, { device: 'cpu' }, { enableProfiling: true, profileFilePrefix: path.join(prof, 'p') });
  await s.run(feedsToTensors(feeds)); (s as any).endProfiling(); await s.release();
  const ev = JSON.parse(readFileSync(path.join(prof, readdirSync(prof)[0]!), 'utf8')) as any[];
  const graph = onnxProto.onnx.ModelProto.decode(readFileSync(file)).graph!;
  for (const loopName of ['prefill', 'repeat']) {
    const loop = graph.node!.find((n) => n.opType === 'Loop' && n.attribute![0]!.g!.name === loopName);
    if (!loop) continue;
    const body = loop.attribute![0]!.g!;
    const rooms = new Set(body.node!.filter((n) => n.opType === 'GroupQueryAttention').flatMap((n) => [n.input![3]!, n.input![4]!]));
    const roomNodes = new Set(body.node!.filter((n) => n.opType === 'Concat' && rooms.has(n.output![0]!)).map((n) => n.name!));
    const names = ev.filter((e) => e.cat === 'Node' && e.name.startsWith(loopName + '/')).sort((a, b) => a.ts - b.ts).map((e) => e.name.replace(/_kernel_time$/, ''));
    const firstGqa = names.findIndex((n) => n.includes('GroupQueryAttention'));
    const before = names.slice(0, firstGqa).filter((n) => roomNodes.has(n)).length;
    // scores taken after the last layer's attention?
    const lastGqa = names.slice(0, names.indexOf(names[0]!, 1) > 0 ? names.indexOf(names[0]!, 1) : names.length).map((n, i) => [n, i] as const).filter(([n]) => n.includes('GroupQueryAttention')).at(-1)?.[1];
    const firstScore = names.findIndex((n) => n.startsWith(loopName + '/score.'));
    console.log(passOrder, loopName, `room Concats run before layer 0's attention: ${before} of ${roomNodes.size}`, loopName === 'repeat' ? `first score node at ${firstScore}, last attention of pass 1 at ${lastGqa}` : '');
  }
}
