// `fastkvzip generate`: greedy continuation of a prompt — the quickest proof a model runs; with
// --gates and --kv-ratio, over a KV cache the gates really shrink (src/eval/compressed-generate.ts).
import { Command, Option } from 'commander';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { addDeviceOptions, deviceFrom, fractionArg, intArg, positiveInt, printJson } from './common.js';
import { loadModel, sessionFor } from '../runtime/model-session.js';
import { generateGreedy } from '../runtime/generate.js';
import { generateWithGates, DECODE_PATHS, type DecodePath } from '../eval/compressed-generate.js';
import { DECODE_BUDGETS, type DecodeBudget } from '../eval/decode-eviction.js';
import { EVICTION_LEVELS, PUBLIC_WINDOW, type EvictionLevel } from '../eval/eviction.js';
import { UserError, UsageError } from '../util/errors.js';
import type { ComputeDType } from '../onnx/weights.js';

/** Compressed generation defaults (docs/method.md §6). */
export const COMPRESSED_GENERATE_DEFAULTS = { prefillChunk: 16000, interval: 128, keepFirst: 4, level: 'pair' as EvictionLevel, budget: 'ratio' as DecodeBudget, decode: 'block' as DecodePath };

function readPromptFile(file: string): string {
  if (!existsSync(file) || statSync(file).isDirectory()) throw new UserError(`${file}: no such prompt file`);
  const buf = readFileSync(file);
  const text = new TextDecoder('utf-8', { fatal: false }).decode(buf);
  if (text.includes('\uFFFD')) throw new UserError(`${file}: not UTF-8 text`);
  return text;
}

export function generateCommand(): Command {
  const d = COMPRESSED_GENERATE_DEFAULTS;
  const cmd = new Command('generate')
    .description('greedy generation with the model running in ONNX Runtime; with --gates and --kv-ratio over a KV cache the gates compress (evicted entries are freed)')
    .requiredOption('--model <dir|repo>', 'local HF model folder or hub repo id')
    .option('--revision <rev>', 'hub revision (branch, tag or commit)')
    .option('--prompt <text>', 'prompt text')
    .option('--prompt-file <txt>', 'read the prompt from a UTF-8 text file (for long prompts; not echoed)')
    .option('--max-new-tokens <n>', 'tokens to generate', (v) => positiveInt(v, '--max-new-tokens'), 32)
    .option('--no-special-tokens', 'do not add the tokenizer\'s special tokens (e.g. BOS) to the prompt')
    .option('--gates <path>', 'trained gates (.pt, .safetensors, .onnx, or a train/run output folder): compress the KV cache')
    .option('--kv-ratio <r>', 'kept fraction of the KV cache with --gates, in (0, 1]', (v) => fractionArg(v, '--kv-ratio', { min: 0, max: 1, minOpen: true }))
    .addOption(new Option('--level <level>', 'eviction budget: one global threshold over (layer, head, position), per layer, or per head').choices(EVICTION_LEVELS).default(d.level))
    .option('--prefill-chunk <n>', 'prefill chunk; the gates score and evict after each', (v) => positiveInt(v, '--prefill-chunk'), d.prefillChunk)
    .option('--evict-interval <n>', 'decoding: score the new tokens and evict every n tokens', (v) => positiveInt(v, '--evict-interval'), d.interval)
    .addOption(new Option('--decode-budget <kind>', 'decoding budget: ratio keeps --kv-ratio of all tokens seen; fixed keeps the size reached after prefill').choices(DECODE_BUDGETS).default(d.budget))
    .addOption(new Option('--decode <path>', 'decoding with --gates: block runs up to --evict-interval greedy steps in one ONNX Runtime run (the cache crosses to the device once per block); step runs once per token. Same tokens').choices(DECODE_PATHS).default(d.decode))
    .option('--keep-first <n>', 'leading prompt tokens never evicted (attention sinks)', (v) => intArg(v, '--keep-first'), d.keepFirst)
    .option('--window <n>', 'always-kept recent tokens of long prompts', (v) => intArg(v, '--window'), PUBLIC_WINDOW.window)
    .option('--window-ratio <f>', 'always-kept fraction of prompts shorter than --short-context', (v) => fractionArg(v, '--window-ratio', { min: 0, max: 1 }), PUBLIC_WINDOW.windowRatio)
    .option('--short-context <n>', 'prompts shorter than this use --window-ratio', (v) => positiveInt(v, '--short-context'), PUBLIC_WINDOW.shortContext)
    .option('--json', 'print a JSON summary instead of the text');
  addDeviceOptions(cmd);
  return cmd.action(async (o) => {
    if ((o.prompt === undefined) === (o.promptFile === undefined)) throw new UsageError('give exactly one of --prompt and --prompt-file');
    if (o.kvRatio !== undefined && !o.gates) throw new UsageError('--kv-ratio needs --gates (the gates decide what to evict)');
    if (o.gates && o.kvRatio === undefined) throw new UsageError('--gates needs --kv-ratio (the kept fraction, e.g. 0.3)');
    const prompt: string = o.prompt ?? readPromptFile(o.promptFile);
    const device = deviceFrom(o);
    if (o.gates) {
      if (!o.json && o.prompt !== undefined) process.stdout.write(prompt);
      const r = await generateWithGates({
        model: o.model,
        revision: o.revision,
        gates: o.gates,
        prompt,
        addSpecialTokens: o.specialTokens,
        device,
        dtype: o.dtype as ComputeDType | undefined,
        ratio: o.kvRatio,
        level: o.level as EvictionLevel,
        prefillChunk: o.prefillChunk,
        window: { window: o.window, windowRatio: o.windowRatio, shortContext: o.shortContext },
        keepFirst: o.keepFirst,
        interval: o.evictInterval,
        budget: o.decodeBudget as DecodeBudget,
        maxNewTokens: o.maxNewTokens,
        decodePath: o.decode as DecodePath,
        onText: o.json ? undefined : (t) => process.stdout.write(t),
      });
      if (!o.json) {
        process.stdout.write('\n');
        return;
      }
      const f = r.footprint;
      printJson({
        model: r.model,
        gates: r.gates,
        prompt: o.prompt !== undefined ? prompt : { file: o.promptFile },
        promptTokens: r.promptTokens,
        tokens: r.tokens,
        text: r.text,
        device: device.device,
        dtype: r.dtype,
        kvRatio: o.kvRatio,
        level: o.level,
        decodeBudget: o.decodeBudget,
        decode: o.decode,
        window: r.window,
        kept: r.kept,
        keptPerLayer: r.keptPerLayer,
        // onnxruntime-node returns outputs to host memory: the cache lives there between runs
        // (on CUDA each run copies it to the device and back: every token with --decode step,
        // every --evict-interval tokens with --decode block); on WebGPU with --decode step it
        // stays in device memory (gpu-buffer tensors)
        cacheBytes: f.bytes,
        cacheLocation: r.cacheLocation,
        cacheDtype: r.cacheDtype,
        fullCacheBytes: f.fullBytes,
        paddingBytes: f.paddingBytes,
        cacheEntries: f.entries,
        paddingEntries: f.paddingEntries,
        prefillCacheBytes: r.prefillFootprint.bytes,
        prefillFullCacheBytes: r.prefillFootprint.fullBytes,
        evicted: r.evicted,
        timings: r.timings,
        seconds: r.timings.firstTokenSeconds + r.timings.decodeSeconds,
      });
      return;
    }
    const m = await loadModel(o.model, { revision: o.revision, device, dtype: o.dtype as ComputeDType | undefined, kinds: ['step'] });
    const tok = m.model.tokenizer;
    if (!tok) throw new UserError(`${m.model.dir}: no tokenizer.json`);
    const ids = tok.encode(prompt, { addSpecialTokens: o.specialTokens });
    if (ids.length === 0) throw new UsageError(`${o.prompt !== undefined ? '--prompt' : o.promptFile} is empty after tokenization`);
    const session = await sessionFor(m, 'step', device);
    const stopIds = [...new Set([...m.model.spec.eosTokenIds, ...(tok.eosTokenId !== null ? [tok.eosTokenId] : [])])];
    const t0 = Date.now();
    if (!o.json && o.prompt !== undefined) process.stdout.write(prompt);
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
    if (o.json) printJson({ model: m.id, prompt: o.prompt !== undefined ? prompt : { file: o.promptFile }, promptTokens: ids.length, tokens: out, text, seconds, device: device.device, dtype: m.dtype });
    else process.stdout.write('\n');
  });
}
