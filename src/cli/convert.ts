// `fastkvzip convert-llama2c`: a llama2.c checkpoint -> a Hugging Face Llama folder.
import { Command } from 'commander';
import { convertLlama2c } from '../model/llama2c.js';
import { printJson } from './common.js';

export function convertCommand(): Command {
  return new Command('convert-llama2c')
    .description('convert a llama2.c checkpoint (model .bin + tokenizer .bin) into an HF-format Llama folder')
    .argument('<model.bin>', 'llama2.c checkpoint')
    .argument('<tokenizer.bin>', 'llama2.c tokenizer')
    .argument('<outdir>', 'output folder (config.json, model.safetensors, tokenizer.json)')
    .option('--json', 'print a JSON summary')
    .action(async (modelBin: string, tokenizerBin: string, outDir: string, o: { json?: boolean }) => {
      const r = await convertLlama2c(modelBin, tokenizerBin, outDir);
      if (o.json) printJson({ out: outDir, tensors: r.tensors, vocab: r.vocab, config: r.config });
      else process.stdout.write(`wrote ${outDir}: ${r.tensors} tensors, vocab ${r.vocab}\n`);
    });
}
