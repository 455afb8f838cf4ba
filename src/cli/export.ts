// `fastkvzip export`: trained gates -> files PyTorch, kvpress and the public code load.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { printJson } from './common.js';
import { readGateSetFile } from '../gate/gate-file.js';
import { GATES_FILE, type TrainSummary } from '../gate/train.js';
import { exportGates, gateFileName, gateFolderName, writeModelCard, type GateFileFormat } from '../export/index.js';
import { publicModelId } from '../export/naming.js';
import { writeOnnxGate } from '../export/onnx-gate.js';
import { measurePrecisionGap } from '../export/precision-gap.js';
import type { GateSet } from '../gate/types.js';
import { uploadFolder } from '../hub/index.js';
import { UserError } from '../util/errors.js';

export interface ExportOptions {
  gates: string;
  format: 'pt' | 'safetensors' | 'onnx';
  out: string;
  modelId?: string;
  push?: string;
  private?: boolean;
  /** license id for the card (default: none chosen) */
  license?: string;
}

export interface ExportResult {
  files: string[];
  folder: string;
  pushed?: { repo: string; commit: string; url: string };
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

/** Export the gates of a `train` output folder (or a gates.safetensors file). */
export async function exportTrained(o: ExportOptions): Promise<ExportResult> {
  const gatesFile = o.gates.endsWith('.safetensors') ? o.gates : path.join(o.gates, GATES_FILE);
  if (!existsSync(gatesFile)) throw new UserError(`${gatesFile}: missing (pass the --out folder of \`fastkvzip train\`)`);
  const trained = readGateSetFile(gatesFile);
  const summaryFile = path.join(path.dirname(gatesFile), 'summary.json');
  const summary: TrainSummary | undefined = existsSync(summaryFile) ? JSON.parse(readFileSync(summaryFile, 'utf8')) : undefined;
  const modelId = o.modelId ?? publicModelId(trained.meta?.model_id ?? 'model', trained.meta?.commit);
  const gates = publishedGates(trained, modelId);
  const files: string[] = [];
  const folder = path.join(o.out, gateFolderName(modelId));
  if (o.format === 'onnx') {
    const name = `q${gates.G}_dim${gates.r}_sink${gates.S}`;
    files.push(writeOnnxGate(folder, name, gates), path.join(folder, `${name}.onnx.data`));
  } else {
    const r = await exportGates(gates, { outDir: o.out, format: o.format, modelId });
    files.push(r.file);
  }
  // one card at the export root (the hub repo root) describing every gate file now in the folder
  const formats = (['pt', 'safetensors', 'onnx'] as GateFileFormat[]).filter((f) => existsSync(path.join(folder, gateFileName(gates, f))));
  const precisionGap = formats.some((f) => f !== 'onnx') ? await measurePrecisionGap(trained, summary?.features ?? undefined) : null;
  const card = path.join(o.out, 'README.md');
  await writeModelCard(card, gates, summary, { formats, repoId: o.push, modelId, license: o.license, precisionGap });
  files.push(card);
  const result: ExportResult = { files, folder };
  if (o.push) {
    const up = await uploadFolder(o.push, o.out, { commitMessage: `fastkvzip gates for ${modelId}`, private: o.private });
    result.pushed = { repo: o.push, ...up };
  }
  return result;
}

export function exportCommand(): Command {
  return new Command('export')
    .description('write trained gates as a PyTorch file (public layout), safetensors or an ONNX model; optionally push to the hub')
    .requiredOption('--gates <dir>', 'output folder of `fastkvzip train` (or its gates.safetensors)')
    .addOption(new Option('--format <format>', 'file format').choices(['pt', 'safetensors', 'onnx']).default('pt'))
    .requiredOption('--out <dir>', 'export folder (files go to <out>/<model-basename>/)')
    .option('--model-id <id>', 'model id for naming and the card (default: from the gates)')
    .option('--push <repo>', 'upload the export folder to this hub repo (token from HF_TOKEN)')
    .option('--private', 'create the hub repo private')
    .option('--license <id>', 'license of the gates for the model card, e.g. apache-2.0 (default: none chosen, "other")')
    .option('--json', 'print a JSON summary')
    .action(async (o) => {
      const r = await exportTrained({ gates: o.gates, format: o.format, out: o.out, modelId: o.modelId, push: o.push, private: o.private, license: o.license });
      if (o.json) printJson(r);
      else process.stdout.write(`wrote ${r.files.map((f) => path.relative(process.cwd(), path.resolve(f)) || '.').join(', ')}${r.pushed ? `; pushed to ${r.pushed.url}` : ''}\n`);
    });
}
