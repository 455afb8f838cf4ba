// Entry point for `export`: write gates as <outDir>/<model basename>/q{G}_dim{r}_sink{S}.<format>
// (.onnx with its .onnx.data), optionally with a README.md model card at <outDir>/README.md (the
// hub repo root); exportTrained is the whole command: read any gates file, export, push.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { writeGateFile } from '../gate/gate-file.js';
import type { GateSet } from '../gate/types.js';
import { uploadFolder } from '../hub/index.js';
import { writeModelCard, type CardSummary } from './model-card.js';
import { gateFileName, gateFolderName, publicModelId, type GateFileFormat } from './naming.js';
import { measurePrecisionGap } from './precision-gap.js';
import { writeOnnxGate } from './onnx-gate.js';
import { readGates } from './read-gates.js';
import { writeGatePt, type WriteGatePtOptions } from './write-gate-pt.js';
import { UserError, fileError } from '../util/errors.js';
import { claimOutputs, recordOutputs } from '../util/owned-files.js';
import { validateGateSet } from '../gate/gate-tensors.js';

export const GATE_FILE_FORMATS: readonly GateFileFormat[] = ['pt', 'safetensors', 'onnx'];

export interface ExportGatesOptions {
  outDir: string;
  format: GateFileFormat;
  /** names the folder; default gates.meta.model_id */
  modelId?: string;
  /** write README.md beside the folder when true (default false) */
  card?: boolean;
  summary?: CardSummary;
  /** hub repository named in the card's loading snippets */
  repoId?: string;
  pt?: WriteGatePtOptions;
}

export interface ExportedGates {
  /** absolute path of the gate file */
  file: string;
  /** every file written for the gates (the ONNX model has its parameters beside it) */
  files: string[];
  /** path inside outDir, with `/` (the hub path) */
  relativePath: string;
  /** absolute path of README.md when written */
  card?: string;
}

export async function exportGates(gates: GateSet, options: ExportGatesOptions): Promise<ExportedGates> {
  const modelId = options.modelId ?? gates.meta?.model_id;
  if (!modelId) throw new UserError('export: the model id is unknown (the gate set has no meta.model_id); pass one');
  if (!GATE_FILE_FORMATS.includes(options.format)) throw new UserError(`export: unknown format "${String(options.format)}" (use ${GATE_FILE_FORMATS.join(', ')})`);
  const relativePath = `${gateFolderName(modelId)}/${gateFileName(gates, options.format)}`;
  const file = path.resolve(options.outDir, ...relativePath.split('/'));
  const files = [file];
  if (options.format === 'pt') await writeGatePt(file, gates, options.pt);
  else if (options.format === 'safetensors') await writeGateFile(file, gates, { dtypes: 'published' });
  else files.push(`${writeOnnxGate(path.dirname(file), path.basename(file, '.onnx'), gates)}.data`);
  const result: ExportedGates = { file, files, relativePath };
  if (options.card) {
    result.card = path.resolve(options.outDir, 'README.md');
    await writeModelCard(result.card, gates, options.summary, { format: options.format, repoId: options.repoId, modelId });
  }
  return result;
}

export interface ExportOptions {
  /** any gates file, or a `train` / `run` output folder */
  gates: string;
  format: GateFileFormat;
  out: string;
  modelId?: string;
  push?: string;
  /** hub visibility of a repo the push creates (default private) */
  private?: boolean;
  /** replace files in --out that fastkvzip did not write (or that changed since) */
  overwrite?: boolean;
  /** license id for the card (default: none chosen) */
  license?: string;
}

export interface ExportResult {
  files: string[];
  folder: string;
  pushed?: { repo: string; commit: string; url: string; files: string[] };
}

/** `fastkvzip export`: read the gates (with train's summary.json beside them, if any), write one format and the card, optionally push. */
export async function exportTrained(o: ExportOptions): Promise<ExportResult> {
  const { file: gatesFile, gates: trained } = await readGates(o.gates);
  validateGateSet(trained); // shapes, finite values, dtype, metrics per layer: the same checks for every format
  const summaryFile = path.join(path.dirname(gatesFile), 'summary.json');
  let summary: (CardSummary & { features?: string }) | undefined;
  if (existsSync(summaryFile)) {
    try {
      summary = JSON.parse(readFileSync(summaryFile, 'utf8'));
    } catch (e) {
      throw fileError(summaryFile, `not valid JSON (${(e as Error).message})`);
    }
  }
  const modelId = o.modelId ?? publicModelId(trained.meta?.model_id ?? 'model', trained.meta?.commit);
  const gates = publishedGates(trained, modelId);
  // The files this export writes, relative to --out: checked before anything is written,
  // recorded afterwards, and the only ones a push uploads.
  const rel = `${gateFolderName(modelId)}/${gateFileName(gates, o.format)}`;
  const rels = o.format === 'onnx' ? [rel, `${rel}.data`, 'README.md'] : [rel, 'README.md'];
  await claimOutputs(o.out, rels, { overwrite: o.overwrite, by: 'export' });
  const r = await exportGates(gates, { outDir: o.out, format: o.format, modelId });
  // one card at the export root (the hub repo root) describing every gate file now in the folder
  const folder = path.dirname(r.file);
  const formats = GATE_FILE_FORMATS.filter((f) => existsSync(path.join(folder, gateFileName(gates, f))));
  const precisionGap = formats.some((f) => f !== 'onnx') ? await measurePrecisionGap(trained, summary?.features ?? undefined) : null;
  await writeModelCard(path.join(o.out, 'README.md'), gates, summary, { formats, repoId: o.push, modelId, license: o.license, precisionGap });
  await recordOutputs(o.out, rels, 'export');
  const result: ExportResult = { files: rels.map((x) => path.join(o.out, ...x.split('/'))), folder };
  if (o.push) {
    const up = await uploadFolder(o.push, o.out, { commitMessage: `fastkvzip gates for ${modelId}`, private: o.private ?? true, files: rels });
    result.pushed = { repo: o.push, ...up, files: rels };
  }
  return result;
}

/** The gate set as published: no local paths in its metadata (model id, local corpus files). */
function publishedGates(g: GateSet, modelId: string): GateSet {
  const meta: Record<string, string> = { ...(g.meta ?? {}), model_id: modelId };
  if (meta.recipe) {
    try {
      const recipe = JSON.parse(meta.recipe);
      const spec = recipe?.corpus?.spec;
      if (typeof spec === 'string' && path.isAbsolute(spec)) recipe.corpus.spec = path.basename(spec);
      meta.recipe = JSON.stringify(recipe);
    } catch {
      // not JSON: leave as is
    }
  }
  return { ...g, meta };
}

export { writeGatePt, type WriteGatePtOptions } from './write-gate-pt.js';
export { readGatePt, type ReadGatePtOptions } from './read-gate-pt.js';
export { readGates, resolveGatesFile, GATE_FILE_EXTENSIONS, type ReadGatesOptions } from './read-gates.js';
export { writeOnnxGate, readOnnxGate, type OnnxGateOptions } from './onnx-gate.js';
export { renderModelCard, writeModelCard, type CardSummary, type CardLayer, type ModelCardOptions } from './model-card.js';
export { gateFileName, gateFolderName, gateRelativePath, type GateFileFormat } from './naming.js';
