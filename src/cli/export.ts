// `fastkvzip export`: trained gates -> files PyTorch, kvpress and the public code load.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { printJson } from './common.js';
import { readGateSetFile } from '../gate/gate-file.js';
import { GATES_FILE, type TrainSummary } from '../gate/train.js';
import { exportGates, gateFolderName, writeModelCard } from '../export/index.js';
import { writeOnnxGate } from '../export/onnx-gate.js';
import { uploadFolder } from '../hub/index.js';
import { UserError } from '../util/errors.js';

export interface ExportOptions {
  gates: string;
  format: 'pt' | 'safetensors' | 'onnx';
  out: string;
  modelId?: string;
  push?: string;
  private?: boolean;
}

export interface ExportResult {
  files: string[];
  folder: string;
  pushed?: { repo: string; commit: string; url: string };
}

/** Export the gates of a `train` output folder (or a gates.safetensors file). */
export async function exportTrained(o: ExportOptions): Promise<ExportResult> {
  const gatesFile = o.gates.endsWith('.safetensors') ? o.gates : path.join(o.gates, GATES_FILE);
  if (!existsSync(gatesFile)) throw new UserError(`${gatesFile}: missing (pass the --out folder of \`fastkvzip train\`)`);
  const gates = readGateSetFile(gatesFile);
  const summaryFile = path.join(path.dirname(gatesFile), 'summary.json');
  const summary: TrainSummary | undefined = existsSync(summaryFile) ? JSON.parse(readFileSync(summaryFile, 'utf8')) : undefined;
  const modelId = o.modelId ?? gates.meta?.model_id ?? 'model';
  const files: string[] = [];
  let folder: string;
  if (o.format === 'onnx') {
    folder = path.join(o.out, gateFolderName(modelId));
    const name = `q${gates.G}_dim${gates.r}_sink${gates.S}`;
    files.push(writeOnnxGate(folder, name, gates), path.join(folder, `${name}.onnx.data`));
    const card = path.join(o.out, 'README.md'); // the export root is the hub repo root
    await writeModelCard(card, gates, summary, { format: 'pt', repoId: o.push, modelId });
    files.push(card);
  } else {
    const r = await exportGates(gates, { outDir: o.out, format: o.format, modelId, card: true, summary, repoId: o.push });
    files.push(r.file);
    if (r.card) files.push(r.card);
    folder = path.dirname(r.file);
  }
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
    .option('--json', 'print a JSON summary')
    .action(async (o) => {
      const r = await exportTrained({ gates: o.gates, format: o.format, out: o.out, modelId: o.modelId, push: o.push, private: o.private });
      if (o.json) printJson(r);
      else process.stderr.write(`wrote ${r.files.join(', ')}${r.pushed ? `; pushed to ${r.pushed.url}` : ''}\n`);
    });
}
