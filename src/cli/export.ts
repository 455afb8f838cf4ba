// `fastkvzip export`: trained gates -> files PyTorch, kvpress and the public code load.
import { Command, Option } from 'commander';
import * as path from 'node:path';
import { printJson } from './common.js';
import { exportTrained, GATE_FILE_FORMATS } from '../export/index.js';
import { UsageError } from '../util/errors.js';

export function exportCommand(): Command {
  return new Command('export')
    .description('write trained gates as a PyTorch file (public layout), safetensors or an ONNX model; optionally push to the hub')
    .requiredOption('--gates <dir>', 'output folder of `fastkvzip train` or `run`, or any gates file (.safetensors, .pt, .onnx)')
    .addOption(new Option('--format <format>', 'file format').choices(GATE_FILE_FORMATS).default('pt'))
    .requiredOption('--out <dir>', 'export folder (files go to <out>/<model-basename>/)')
    .option('--model-id <id>', 'model id for naming and the card (default: from the gates)')
    .option('--push <repo>', 'upload the files this export wrote (gate file(s) and README.md, nothing else in --out) to this hub repo (token from HF_TOKEN)')
    .option('--private', 'create the hub repo private (the default)')
    .option('--public', 'create the hub repo public (an existing repo keeps its visibility)')
    .option('--overwrite', 'replace files in --out that fastkvzip did not write or that changed since')
    .option('--license <id>', 'license of the gates for the model card, e.g. apache-2.0 (default: none chosen, "other")')
    .option('--json', 'print a JSON summary')
    .action(async (o) => {
      if (o.private && o.public) throw new UsageError('--private and --public exclude each other');
      const r = await exportTrained({ gates: o.gates, format: o.format, out: o.out, modelId: o.modelId, push: o.push, private: !o.public, overwrite: o.overwrite, license: o.license });
      if (o.json) printJson(r);
      else process.stdout.write(`wrote ${r.files.map((f) => path.relative(process.cwd(), path.resolve(f)) || '.').join(', ')}${r.pushed ? `; pushed to ${r.pushed.url}` : ''}\n`);
    });
}
