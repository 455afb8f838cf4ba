// README.md (Hugging Face model card) for exported gates: the training setup, per-layer
// held-out results, and how to load the file. Rendered only from facts passed in.
import type { LayerResult, TrainSummary } from '../gate/train.js';
import type { GateSet } from '../gate/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import { gateFileName, gateFolderName, type GateFileFormat } from './naming.js';
import { TOOL_NAME, TOOL_VERSION } from '../version.js';
import type { PrecisionGap } from './precision-gap.js';

/** Per-layer results of the final evaluation as the card reads them (the trainer's LayerResult; older summaries lack the optional parts). */
export type CardLayer = Pick<LayerResult, 'layer' | 'testLoss' | 'testAcc'> & Partial<Pick<LayerResult, 'trainLoss' | 'trainAcc' | 'recall30'>>;

/** What the card reads of the trainer's summary (src/gate/train.ts), which can be passed as is. */
export type CardSummary = Pick<TrainSummary, 'steps' | 'batch' | 'lr' | 'seed'> &
  Partial<Pick<TrainSummary, 'device' | 'seconds' | 'tokens' | 'options'>> & { layers?: CardLayer[] };

export interface ModelCardOptions {
  /** file format the card describes (default 'pt'); `formats` lists several */
  format?: GateFileFormat;
  /** every gate file format in the export folder, in the order the card describes them */
  formats?: GateFileFormat[];
  /** SPDX-style license id for the card's metadata (default: none chosen, `license: other`) */
  license?: string;
  /** measured effect of the .pt's half-precision projections on the scores (precision-gap.ts) */
  precisionGap?: PrecisionGap | null;
  /** hub repository the files are uploaded to, for the loading snippets */
  repoId?: string;
  /** overrides gates.meta.model_id */
  modelId?: string;
}

const fmt = (x: number | undefined, digits: number): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const pct = (x: number | undefined): string => (x === undefined || !Number.isFinite(x) ? '–' : `${(100 * x).toFixed(1)} %`);

function duration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${Math.floor(seconds / 3600)} h ${String(Math.round((seconds % 3600) / 60)).padStart(2, '0')} min`;
}

function parseJsonObject(s: string | undefined): Record<string, unknown> | undefined {
  if (!s) return undefined;
  try {
    const v = JSON.parse(s);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Inline code that survives any content (newlines, pipes, backticks) in a list item or a table cell. */
export function mdCode(v: unknown, inTable = false): string {
  const text = typeof v === 'string' && !/[\n\r\t]/.test(v) ? v : JSON.stringify(v) ?? String(v);
  // GFM splits table rows at every unescaped pipe, code spans included
  const safe = inTable ? text.replace(/\|/g, '\\|') : text;
  const ticks = Math.max(0, ...[...safe.matchAll(/`+/g)].map((m) => m[0].length)) + 1;
  const fence = '`'.repeat(ticks);
  return ticks > 1 || safe.startsWith('`') || safe.endsWith('`') ? `${fence} ${safe} ${fence}` : `${fence}${safe}${fence}`;
}

/** Plain text for a table cell or a heading: one line, pipes escaped. */
const mdText = (s: string): string => s.replace(/[\r\n]+/g, ' ').replace(/\|/g, '\\|');

/** 8589934592 -> "8 GiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** option keys whose values are byte counts */
const BYTE_OPTIONS = new Set(['memoryBudget']);

function showOption(k: string, v: unknown): string {
  if (BYTE_OPTIONS.has(k) && typeof v === 'number') return humanBytes(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return mdCode(v, true);
}

/** a hub repo id ("org/name"), as opposed to the name of a local folder */
const isHubId = (id: string): boolean => /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(id);

/** Per-layer rows: the summary's when given, else the last evaluation in gates.metrics. */
function layerRows(gates: GateSet, summary: CardSummary | undefined): CardLayer[] {
  if (summary?.layers && summary.layers.length > 0) return summary.layers;
  const m = gates.metrics;
  const last = (rows: number[][] | undefined) => rows?.at(-1);
  const [loss, acc, lossTrain, accTrain] = [last(m?.loss), last(m?.acc), last(m?.lossTrain), last(m?.accTrain)];
  if (!loss || !acc) return [];
  return gates.layers.map((layer, i) => ({ layer, testLoss: loss[i]!, testAcc: acc[i]!, trainLoss: lossTrain?.[i], trainAcc: accTrain?.[i] }));
}

/** The card's Markdown text (deterministic for the same inputs). */
export function renderModelCard(gates: GateSet, summary?: CardSummary, options: ModelCardOptions = {}): string {
  const formats = options.formats ?? [options.format ?? 'pt'];
  const meta = gates.meta ?? {};
  const modelId = options.modelId ?? meta.model_id ?? meta.modelId ?? 'unknown-model';
  const rel = (f: GateFileFormat) => `${gateFolderName(modelId)}/${gateFileName(gates, f)}`;
  const half = gates.modelDtype !== 'float32';
  const repo = options.repoId ?? '<this-repo>';
  const revision = meta.commit || meta.revision || '';
  const recipe = parseJsonObject(meta.recipe);
  const train = parseJsonObject(meta.train);
  const rows = layerRows(gates, summary);
  const haveRecall = rows.some((r) => r.recall30 !== undefined);
  const haveTrain = rows.some((r) => r.trainLoss !== undefined);
  const contiguous = gates.layers.every((l, i) => l === i);
  const L: string[] = [];

  L.push('---');
  if (modelId !== 'unknown-model' && isHubId(modelId)) L.push(`base_model: ${modelId}`);
  L.push(`license: ${options.license ?? 'other'}`);
  L.push(`library_name: ${formats.includes('pt') || formats.includes('safetensors') ? 'pytorch' : 'onnx'}`, 'tags:', '- fast-kvzip', '- kv-cache-compression', '- kv-eviction', '---', '');
  L.push(`# Fast KVzip gates for ${mdText(modelId)}`, '');
  L.push(
    `KV-eviction gates in the format of Fast KVzip ("Efficient and Accurate LLM Inference with Gated KV Eviction", arXiv 2601.17668): one low-rank sink-attention gate per attention layer that scores each KV pair from the layer's attention input, trained to predict KVzip importance scores. Trained with ${TOOL_NAME} ${TOOL_VERSION}.`,
    '',
  );

  if (!options.license) {
    L.push(
      `License: none was chosen at export (\`fastkvzip export --license <id>\` sets one). The gates are trained on the activations of ${mdCode(modelId)}; check its license before publishing them.`,
      '',
    );
  }
  L.push('## Files', '');
  const shape = `${gates.layers.length} gates, rank r = ${gates.r}, ${gates.S} sink keys, query group G = ${gates.G}, ${gates.H} KV heads, input size D = ${gates.D}`;
  for (const f of formats) {
    if (f === 'onnx') L.push(`- \`${rel(f)}\` (+ \`${rel(f)}.data\`) — an ONNX model of all ${shape}; float32 parameters.`);
    else if (f === 'safetensors') L.push(`- \`${rel(f)}\` — ${shape}; tensors in the dtypes of the .pt (below).`);
    else L.push(`- \`${rel(f)}\` — ${shape}; the public file layout.`);
  }
  if (formats.some((f) => f !== 'onnx')) {
    L.push(
      `- Dtypes of the .pt and .safetensors files: \`q_proj\`, \`k_proj\` and \`b\` in the model dtype (${gates.modelDtype}), as the public gates store them; \`q_norm\`, \`k_norm\` and \`k_base\` in float32.${half ? ' The gates were trained with float32 parameters; the ONNX export keeps them.' : ''}`,
    );
  }
  L.push(
    contiguous
      ? `- Entry i of the gate list belongs to model layer i.`
      : `- The gates belong to model layers ${JSON.stringify(gates.layers)}, in that order (layers not listed have no gate).`,
  );
  L.push('');
  if (half && formats.some((f) => f !== 'onnx')) {
    const g = options.precisionGap;
    L.push(
      g
        ? `Rounding the projections to ${g.dtype} changes the gate scores little: on ${g.tokens} attention inputs per layer from the training store (CPU, float32 compute), |score(float32 parameters) − score(${g.dtype} projections)| is at most ${g.maxAbs.toExponential(1)} (mean ${g.meanAbs.toExponential(1)}), and ${(100 * g.top30Agreement).toFixed(1)} % of the tokens the float32 gates rank in their top 30 % (per layer and head) stay there.`
        : `The ${gates.modelDtype} projections differ from the float32-trained ones by the rounding of that type; the effect on the scores was not measured for this export (the training store was not at hand).`,
      '',
    );
  }

  L.push('## Training setup', '');
  L.push(`| setting | value |`, `| --- | --- |`);
  L.push(`| base model | ${mdCode(modelId, true)} |`);
  if (revision) L.push(`| model revision | ${mdCode(revision, true)} |`);
  if (summary) {
    L.push(`| steps | ${summary.steps} |`, `| batch (token positions) | ${summary.batch} |`, `| learning rate | ${summary.lr} |`, `| seed | ${summary.seed} |`);
    for (const [k, v] of Object.entries(summary.options ?? {})) if (v !== null && v !== undefined) L.push(`| ${mdText(k)} | ${showOption(k, v)} |`);
    if (summary.tokens) L.push(`| context tokens (train / held-out) | ${summary.tokens.total} (${summary.tokens.train} / ${summary.tokens.test}) |`);
    if (summary.device) L.push(`| device | ${summary.device} |`);
    if (summary.seconds !== undefined) L.push(`| training time | ${duration(summary.seconds)} |`);
  } else if (train) {
    for (const [k, v] of Object.entries(train)) L.push(`| ${mdText(k)} | ${showOption(k, v)} |`);
  }
  L.push('');
  if (recipe) {
    L.push('Data recipe:', '');
    for (const [k, v] of Object.entries(recipe)) L.push(`- ${mdText(k)}: ${typeof v === 'number' || typeof v === 'boolean' ? String(v) : mdCode(v)}`);
    L.push('');
  } else if (meta.recipe) {
    L.push(`Data recipe: ${mdCode(meta.recipe)}`, '');
  }
  L.push(
    'Objective: binary cross-entropy between the gate output and the KVzip score of each (head, token); accuracy counts agreement of `gate ≥ 0.05` with `score ≥ 0.05`.',
    '',
  );

  L.push('## Results (held-out tokens, last evaluation)', '');
  if (rows.length === 0) {
    L.push('No evaluation results were recorded.', '');
  } else {
    const head = ['gate', 'model layer', 'loss', 'accuracy'];
    if (haveTrain) head.push('train loss', 'train accuracy');
    if (haveRecall) head.push('recall@30%');
    L.push(`| ${head.join(' | ')} |`, `| ${head.map(() => '---').join(' | ')} |`);
    rows.forEach((r, i) => {
      const cells = [String(i), String(r.layer), fmt(r.testLoss, 4), pct(r.testAcc)];
      if (haveTrain) cells.push(fmt(r.trainLoss, 4), pct(r.trainAcc));
      if (haveRecall) cells.push(pct(r.recall30));
      L.push(`| ${cells.join(' | ')} |`);
    });
    const mean = (xs: (number | undefined)[]) => {
      const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
    };
    const cells = ['mean', '', fmt(mean(rows.map((r) => r.testLoss)), 4), pct(mean(rows.map((r) => r.testAcc)))];
    if (haveTrain) cells.push(fmt(mean(rows.map((r) => r.trainLoss)), 4), pct(mean(rows.map((r) => r.trainAcc))));
    if (haveRecall) cells.push(pct(mean(rows.map((r) => r.recall30))));
    L.push(`| ${cells.join(' | ')} |`, '');
    if (haveRecall) {
      L.push('recall@30%: of the 30 % of tokens with the highest KVzip score (per head), the share that is also in the gate\'s top 30 %, on held-out tokens, averaged over heads.', '');
    }
  }

  L.push('## How to load', '');
  const repoArg = JSON.stringify(repo);
  const base = isHubId(modelId) ? modelId : `path/to/${modelId}`;
  for (const f of formats) {
    if (f === 'pt') {
      L.push(`### PyTorch (\`${gateFileName(gates, 'pt')}\`)`, '');
      L.push('A plain `torch.save` checkpoint (its metric arrays are numpy, hence `weights_only=False`):', '');
      L.push('```python', 'import torch', 'from huggingface_hub import hf_hub_download', '');
      L.push(`path = hf_hub_download(${repoArg}, "${rel('pt')}")`);
      L.push('ckpt = torch.load(path, weights_only=False)');
      L.push('state_dicts = ckpt["module"]  # one state dict per gate');
      L.push('held_out_loss = ckpt["loss"]  # numpy [evaluations, gates]; also "acc", "loss_train", "acc_train"', '```', '');
      L.push(
        'kvpress (`FastKVzipPress`) and the public Fast KVzip code load gates only from the hub repo `Jang-Hyun/Fast-KVzip` (`<model name in lower case>/q{G}_dim{r}_sink{S}.pt`). This file has the same path, layout and keys; build the gate modules from it and hand them to the press, which then skips its own download:',
        '',
      );
      L.push('```python', 'import torch', 'from huggingface_hub import hf_hub_download', 'from transformers import pipeline', 'from kvpress import FastKVzipPress');
      L.push('from kvpress.presses.fastkvzip_press import Weight  # the public code: `from attention.gate import Weight`, run in its prefill/ folder', '');
      L.push(`path = hf_hub_download(${repoArg}, "${rel('pt')}")`);
      L.push('gates = []');
      L.push('for i, sd in enumerate(torch.load(path, weights_only=False)["module"]):');
      L.push(`    gate = Weight(index=i, input_dim=${gates.D}, output_dim=${gates.r}, nhead=${gates.H}, ngroup=${gates.G}, dtype=sd["q_proj.weight"].dtype, sink=${gates.S})`);
      L.push('    gate.load_state_dict(sd)', '    gates.append(gate.to("cuda"))', '');
      L.push('press = FastKVzipPress(compression_ratio=0.7)  # evict 70 % of the KV pairs', 'press.gates = gates');
      L.push(`pipe = pipeline("kv-press-text-generation", model=${JSON.stringify(base)}, device_map="cuda", torch_dtype="auto")`);
      L.push('context = "The keeper of the lighthouse wrote down every ship that passed. " * 200');
      L.push('print(pipe(context, question="What did the keeper write down?", press=press)["answer"])', '```', '');
      if (!contiguous) {
        L.push(
          `kvpress looks gates up by model layer index (\`gates[layer_idx]\`). This file lists gates for layers ${JSON.stringify(gates.layers)} only, so put each gate at its layer's position in a list as long as the model before handing it over.`,
          '',
        );
      }
    } else if (f === 'safetensors') {
      L.push(`### safetensors (\`${gateFileName(gates, 'safetensors')}\`)`, '');
      L.push('Tensors are named `layers.{i}.{key}`, and the metadata key `layers` gives the model layer of each i:', '');
      L.push('```python', 'import json', 'from huggingface_hub import hf_hub_download', 'from safetensors import safe_open', '');
      L.push(`path = hf_hub_download(${repoArg}, "${rel('safetensors')}")`);
      L.push('with safe_open(path, framework="pt") as f:');
      L.push('    layers = json.loads(f.metadata()["layers"])');
      L.push('    state_dicts = [{k.split(".", 2)[2]: f.get_tensor(k) for k in f.keys() if k.startswith(f"layers.{i}.")} for i in range(len(layers))]');
      L.push('```', '');
      L.push('Each state dict has the keys of the public Fast KVzip gate module and loads into it with `load_state_dict` (as in the kvpress example above).', '');
    } else {
      L.push(`### ONNX (\`${gateFileName(gates, 'onnx')}\`)`, '');
      L.push(
        `One model for all gates, float32 parameters in the \`.onnx.data\` file beside it. Input \`attn_input\` [${gates.layers.length}, tokens, ${gates.D}] (float32): each gated layer's attention input (the output of its input RMSNorm); output \`scores\` [${gates.layers.length}, ${gates.H}, tokens], in (0, 1).`,
        '',
      );
      L.push('```python', 'import numpy as np', 'import onnxruntime as ort', 'from huggingface_hub import hf_hub_download', '');
      L.push(`hf_hub_download(${repoArg}, "${rel('onnx')}.data")  # lands beside the model`);
      L.push(`session = ort.InferenceSession(hf_hub_download(${repoArg}, "${rel('onnx')}"))`);
      L.push(`attn_input = np.random.randn(${gates.layers.length}, 100, ${gates.D}).astype(np.float32)  # use the model's attention inputs`);
      L.push('(scores,) = session.run(["scores"], {"attn_input": attn_input})', 'print(scores.shape)', '```', '');
    }
  }

  L.push('## Gate', '');
  L.push(
    'For an attention input x: q = RMSNorm(W_q x + c) per (head, group), k = RMSNorm(W_k x) per head, ℓ = k·q/√r + b, β_s = k_base_s·q/√r; the gate is the mean over the group of 1 / (1 + Σ_s exp(β_s − ℓ)), in (0, 1). Tokens with low gate values are evicted first.',
    '',
  );
  return L.join('\n');
}

/** Write the card atomically. */
export async function writeModelCard(file: string, gates: GateSet, summary?: CardSummary, options?: ModelCardOptions): Promise<void> {
  await writeFileAtomic(file, renderModelCard(gates, summary, options));
}
