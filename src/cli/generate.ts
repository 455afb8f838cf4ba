// `fastkvzip generate`: greedy continuation of a prompt — the quickest proof a model runs.
import { Command } from 'commander';
import { addDeviceOptions, deviceFrom, positiveInt, printJson } from './common.js';
import { loadModel, sessionFor } from '../runtime/model-session.js';
import { generateGreedy } from '../runtime/generate.js';
import { UserError, UsageError } from '../util/errors.js';
import type { ComputeDType } from '../onnx/weights.js';

export function generateCommand(): Command {
  const cmd = new Command('generate')
    .description('greedy generation with the model running in ONNX Runtime')
    .requiredOption('--model <dir|repo>', 'local HF model folder or hub repo id')
    .option('--revision <rev>', 'hub revision (branch, tag or commit)')
    .requiredOption('--prompt <text>', 'prompt text')
    .option('--max-new-tokens <n>', 'tokens to generate', (v) => positiveInt(v, '--max-new-tokens'), 32)
    .option('--no-special-tokens', 'do not add the tokenizer\'s special tokens (e.g. BOS) to the prompt')
    .option('--json', 'print a JSON summary instead of the text');
  addDeviceOptions(cmd);
  return cmd.action(async (o) => {
    const device = deviceFrom(o);
    const m = await loadModel(o.model, { revision: o.revision, device, dtype: o.dtype as ComputeDType | undefined, kinds: ['step'] });
    const tok = m.model.tokenizer;
    if (!tok) throw new UserError(`${m.model.dir}: no tokenizer.json`);
    const ids = tok.encode(o.prompt, { addSpecialTokens: o.specialTokens });
    if (ids.length === 0) throw new UsageError('--prompt is empty after tokenization');
    const session = await sessionFor(m, 'step', device);
    const stopIds = [...new Set([...m.model.spec.eosTokenIds, ...(tok.eosTokenId !== null ? [tok.eosTokenId] : [])])];
    const t0 = Date.now();
    if (!o.json) process.stdout.write(o.prompt);
    let shown = '';
    const out: number[] = [];
    await generateGreedy(session, m.model.spec, m.cacheDtype, ids, {
      maxNewTokens: o.maxNewTokens,
      stopIds,
      onToken: (id) => {
        out.push(id);
        if (o.json) return;
        const text = tok.decode(out.filter((t) => !stopIds.includes(t)), { skipSpecialTokens: true });
        process.stdout.write(text.slice(shown.length));
        shown = text;
      },
    });
    const seconds = (Date.now() - t0) / 1000;
    const text = tok.decode(out.filter((t) => !stopIds.includes(t)), { skipSpecialTokens: true });
    if (o.json) printJson({ model: m.id, prompt: o.prompt, promptTokens: ids.length, tokens: out, text, seconds, device: device.device, dtype: m.dtype });
    else process.stdout.write('\n');
  });
}
