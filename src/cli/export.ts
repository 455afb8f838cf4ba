// `fastkvzip export`: trained gates -> files PyTorch, kvpress and the public code load.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { printJson } from './common.js';
import { readGateSetFile } from '../gate/gate-file.js';
import { GATES_FILE, type TrainSummary } from '../gate/train.js';
import { exportGates, gateFolderName, gateRelativePath, writeModelCard } from '../export/index.js';
import { writeOnnxGate } from '../export/onnx-gate.js';
import { uploadFolder } from '../hub/index.js';
import { UserError, fileError } from '../util/errors.js';
import { claimOutputs, recordOutputs } from '../util/owned-files.js';

export interface ExportOptions {
  gates: string;
  format: 'pt' | 'safetensors' | 'onnx';
  out: string;
  modelId?: string;
  push?: string;
  /** hub visibility of a repo the push creates (default private) */
  private?: boolean;
  /** replace files in --out that fastkvzip did not write (or that changed since) */
  overwrite?: boolean;
}

export interface ExportResult {
  files: string[];
  folder: string;
  pushed?: { repo: string; commit: string; url: string; files: string[] };
}

function readSummary(file: string): TrainSummary | undefined {
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw fileError(file, `not valid JSON (${(e as Error).message})`);
  }
}

/** Export the gates of a `train` output folder (or a gates.safetensors file). */
export async function exportTrained(o: ExportOptions): Promise<ExportResult> {
  const gatesFile = o.gates.endsWith('.safetensors') ? o.gates : path.join(o.gates, GATES_FILE);
  if (!existsSync(gatesFile)) throw new UserError(`${gatesFile}: missing (pass the --out folder of \`fastkvzip train\`)`);
  const gates = readGateSetFile(gatesFile); // validated: shapes, finite values, dtype, metrics per layer
  const summary = readSummary(path.join(path.dirname(gatesFile), 'summary.json'));
  const modelId = o.modelId ?? gates.meta?.model_id ?? 'model';
  // The files this export writes, relative to --out: checked before anything is written,
  // recorded afterwards, and the only ones a push uploads.
  const folderName = gateFolderName(modelId);
  const name = `q${gates.G}_dim${gates.r}_sink${gates.S}`;
  const rels = o.format === 'onnx' ? [`${folderName}/${name}.onnx`, `${folderName}/${name}.onnx.data`, 'README.md'] : [gateRelativePath(modelId, gates, o.format), 'README.md'];
  await claimOutputs(o.out, rels, { overwrite: o.overwrite, by: 'export' });
  const folder = path.join(o.out, folderName);
  if (o.format === 'onnx') {
    writeOnnxGate(folder, name, gates);
    await writeModelCard(path.join(o.out, 'README.md'), gates, summary, { format: 'pt', repoId: o.push, modelId }); // the export root is the hub repo root
  } else {
    await exportGates(gates, { outDir: o.out, format: o.format, modelId, card: true, summary, repoId: o.push });
  }
  await recordOutputs(o.out, rels, 'export');
  const files = rels.map((r) => path.join(o.out, ...r.split('/')));
  const result: ExportResult = { files, folder };
  if (o.push) {
    const up = await uploadFolder(o.push, o.out, { commitMessage: `fastkvzip gates for ${modelId}`, private: o.private ?? true, files: rels });
    result.pushed = { repo: o.push, ...up, files: rels };
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
    .option('--push <repo>', 'upload the files this export wrote (gate file(s) and README.md, nothing else in --out) to this hub repo (token from HF_TOKEN)')
    .option('--private', 'create the hub repo private (the default)')
    .option('--public', 'create the hub repo public (an existing repo keeps its visibility)')
    .option('--overwrite', 'replace files in --out that fastkvzip did not write or that changed since')
    .option('--json', 'print a JSON summary')
    .action(async (o) => {
      if (o.private && o.public) throw new UserError('--private and --public exclude each other');
      const r = await exportTrained({ gates: o.gates, format: o.format, out: o.out, modelId: o.modelId, push: o.push, private: !o.public, overwrite: o.overwrite });
      if (o.json) printJson(r);
      else process.stderr.write(`wrote ${r.files.join(', ')}${r.pushed ? `; pushed to ${r.pushed.url}` : ''}\n`);
    });
}
