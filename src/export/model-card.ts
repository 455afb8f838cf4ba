// README.md (Hugging Face model card) for exported gates: the training setup, per-layer
// held-out results, and how to load the file. Rendered only from facts passed in.
import type { LayerResult, TrainSummary } from '../gate/train.js';
import type { GateSet } from '../gate/types.js';
import { writeFileAtomic } from '../util/atomic.js';
import { gateFileName, gateFolderName, type GateFileFormat } from './naming.js';
import { TOOL_NAME, TOOL_VERSION } from '../version.js';

/** Per-layer results of the final evaluation as the card reads them (the trainer's LayerResult; older summaries lack the optional parts). */
export type CardLayer = Pick<LayerResult, 'layer' | 'testLoss' | 'testAcc'> & Partial<Pick<LayerResult, 'trainLoss' | 'trainAcc' | 'recall30'>>;

/** What the card reads of the trainer's summary (src/gate/train.ts), which can be passed as is. */
export type CardSummary = Pick<TrainSummary, 'steps' | 'batch' | 'lr' | 'seed'> &
  Partial<Pick<TrainSummary, 'device' | 'seconds' | 'tokens' | 'options'>> & { layers?: CardLayer[] };

export interface ModelCardOptions {
  /** file format the card describes (default 'pt') */
  format?: GateFileFormat;
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

const show = (v: unknown): string => (typeof v === 'string' ? v : JSON.stringify(v));

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
  const format = options.format ?? 'pt';
  const meta = gates.meta ?? {};
  const modelId = options.modelId ?? meta.model_id ?? meta.modelId ?? 'unknown-model';
  const relPath = `${gateFolderName(modelId)}/${gateFileName(gates, format)}`;
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
  if (modelId !== 'unknown-model') L.push(`base_model: ${modelId}`);
  L.push('library_name: pytorch', 'tags:', '- fast-kvzip', '- kv-cache-compression', '- kv-eviction', '---', '');
  L.push(`# Fast KVzip gates for ${modelId}`, '');
  L.push(
    `KV-eviction gates in the format of Fast KVzip ("Efficient and Accurate LLM Inference with Gated KV Eviction", arXiv 2601.17668): one low-rank sink-attention gate per attention layer that scores each KV pair from the layer's attention input, trained to predict KVzip importance scores. Trained with ${TOOL_NAME} ${TOOL_VERSION}.`,
    '',
  );

  L.push('## Files', '');
  L.push(`- \`${relPath}\` — ${gates.layers.length} gates, rank r = ${gates.r}, ${gates.S} sink keys, query group G = ${gates.G}, ${gates.H} KV heads, input size D = ${gates.D}.`);
  L.push(
    format === 'onnx'
      ? `- Dtypes: every parameter in float32 (the trained master copies; the model is ${gates.modelDtype}).`
      : `- Dtypes: \`q_proj\`, \`k_proj\` and \`b\` in the model dtype (${gates.modelDtype}); \`q_norm\`, \`k_norm\` and \`k_base\` in float32.`,
  );
  L.push(
    contiguous
      ? `- Entry i of the gate list belongs to model layer i.`
      : `- The gates belong to model layers ${JSON.stringify(gates.layers)}, in that order (layers not listed have no gate).`,
  );
  L.push('');

  L.push('## Training setup', '');
  L.push(`| setting | value |`, `| --- | --- |`);
  L.push(`| base model | \`${modelId}\` |`);
  if (revision) L.push(`| model revision | \`${revision}\` |`);
  if (summary) {
    L.push(`| steps | ${summary.steps} |`, `| batch (token positions) | ${summary.batch} |`, `| learning rate | ${summary.lr} |`, `| seed | ${summary.seed} |`);
    for (const [k, v] of Object.entries(summary.options ?? {})) if (v !== null && v !== undefined) L.push(`| ${k} | ${show(v)} |`);
    if (summary.tokens) L.push(`| context tokens (train / held-out) | ${summary.tokens.total} (${summary.tokens.train} / ${summary.tokens.test}) |`);
    if (summary.device) L.push(`| device | ${summary.device} |`);
    if (summary.seconds !== undefined) L.push(`| training time | ${duration(summary.seconds)} |`);
  } else if (train) {
    for (const [k, v] of Object.entries(train)) L.push(`| ${k} | ${show(v)} |`);
  }
  L.push('');
  if (recipe) {
    L.push('Data recipe:', '');
    for (const [k, v] of Object.entries(recipe)) L.push(`- ${k}: ${show(v)}`);
    L.push('');
  } else if (meta.recipe) {
    L.push(`Data recipe: ${meta.recipe}`, '');
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
  if (format === 'pt') {
    L.push('With PyTorch (the file is a plain `torch.save` checkpoint; metric arrays are numpy, hence `weights_only=False`):', '');
    L.push('```python', 'import torch', 'from huggingface_hub import hf_hub_download', '');
    L.push(`path = hf_hub_download("${repo}", "${relPath}")`);
    L.push('ckpt = torch.load(path, weights_only=False)');
    L.push('state_dicts = ckpt["module"]  # one state dict per gate');
    L.push('held_out_loss = ckpt["loss"]  # numpy [evaluations, gates]; also "acc", "loss_train", "acc_train"', '```', '');
    L.push(
      'The public Fast KVzip code and kvpress download `<model name in lower case>/q{G}_dim{r}_sink{S}.pt` from the hub repo `Jang-Hyun/Fast-KVzip`; this file has the same path, layout and keys. To use it with kvpress, build the gates and hand them to the press:',
      '',
    );
    L.push('```python', 'import torch');
    L.push('from kvpress import FastKVzipPress', 'from kvpress.presses import fastkvzip_press as fkp', '');
    L.push('Gate = getattr(fkp, "FastKVzipGate", None) or getattr(fkp, "Weight")  # the name differs between kvpress versions');
    L.push('state_dicts = torch.load(path, weights_only=False)["module"]');
    L.push('gates = []');
    L.push('for i, sd in enumerate(state_dicts):');
    L.push(`    gate = Gate(index=i, input_dim=${gates.D}, output_dim=${gates.r}, nhead=${gates.H}, ngroup=${gates.G}, dtype=sd["q_proj.weight"].dtype, sink=${gates.S})`);
    L.push('    gate.load_state_dict(sd)', '    gates.append(gate.to("cuda"))');
    L.push('press = FastKVzipPress(compression_ratio=0.7)', 'press.gates = gates', '```', '');
    if (!contiguous) {
      L.push(
        `kvpress looks gates up by model layer index (\`gates[layer_idx]\`). This file lists gates for layers ${JSON.stringify(gates.layers)} only, so put each gate at its layer's position in a list as long as the model before handing it over.`,
        '',
      );
    }
  } else if (format === 'onnx') {
    L.push(`With ONNX Runtime; the parameters (fp32) are in \`${relPath}.data\`, which must stay beside the model. Input \`attn_input\` [gates, tokens, D] holds the attention inputs (input-RMSNorm outputs) of the gated layers in the order of the metadata key \`layers\`; output \`scores\` [gates, H, tokens]:`, '');
    L.push('```python', 'import numpy as np, onnxruntime as ort', 'from huggingface_hub import snapshot_download', '');
    L.push(`root = snapshot_download("${repo}")`);
    L.push(`session = ort.InferenceSession(f"{root}/${relPath}")`);
    L.push(`scores = session.run(["scores"], {"attn_input": np.zeros((${gates.layers.length}, 8, ${gates.D}), np.float32)})[0]`, '```', '');
  } else {
    L.push('With the `safetensors` package; tensors are named `layers.{i}.{key}`, and the metadata key `layers` gives the model layer of each i:', '');
    L.push('```python', 'import json', 'from huggingface_hub import hf_hub_download', 'from safetensors import safe_open', '');
    L.push(`path = hf_hub_download("${repo}", "${relPath}")`);
    L.push('with safe_open(path, framework="pt") as f:');
    L.push('    layers = json.loads(f.metadata()["layers"])');
    L.push('    state_dicts = [{k.split(".", 2)[2]: f.get_tensor(k) for k in f.keys() if k.startswith(f"layers.{i}.")} for i in range(len(layers))]');
    L.push('```', '');
    L.push('Each state dict has the keys of the public Fast KVzip gate module and loads into it with `load_state_dict`.', '');
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
