// ONNX Runtime sessions on the chosen execution provider. No silent fallback: if the EP
// cannot load we say why and how to fix it.
import * as ort from 'onnxruntime-node';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { UserError, UsageError } from '../util/errors.js';

export type Device = 'cpu' | 'cuda' | 'webgpu';
export const DEVICES: Device[] = ['cpu', 'cuda', 'webgpu'];

export interface DeviceOptions {
  device: Device;
  deviceId?: number;
  /** intra-op threads for the CPU EP (0 = ORT default) */
  threads?: number;
}

export function parseDevice(value: string): Device {
  if (!DEVICES.includes(value as Device)) throw new UsageError(`--device must be one of ${DEVICES.join(', ')} (got "${value}")`);
  return value as Device;
}

/** Folder holding onnxruntime-node's native libraries for this platform. */
export function ortBinaryDir(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

function providerFor(opts: DeviceOptions): ort.InferenceSession.ExecutionProviderConfig {
  switch (opts.device) {
    case 'cpu':
      return 'cpu';
    case 'cuda': {
      const lib = path.join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so');
      if (!existsSync(lib)) {
        throw new UserError(
          `--device cuda: the ONNX Runtime CUDA provider is not installed (${lib} is missing). ` +
            'CUDA 12 (needs internet): `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` (or a fresh `ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci`); CUDA 13: copy libonnxruntime_providers_cuda.so and ' +
            'libonnxruntime_providers_shared.so built for ONNX Runtime 1.29.0 into that folder (see README "GPUs").',
        );
      }
      return { name: 'cuda', deviceId: opts.deviceId ?? 0 } as ort.InferenceSession.ExecutionProviderConfig;
    }
    case 'webgpu':
      return { name: 'webgpu' } as ort.InferenceSession.ExecutionProviderConfig;
  }
}

/** ORT's log level: FASTKVZIP_ORT_LOG_LEVEL=0..4 (2 shows nodes placed off the chosen EP); errors only by default. */
function logLevel(): 0 | 1 | 2 | 3 | 4 {
  const v = Number(process.env.FASTKVZIP_ORT_LOG_LEVEL ?? 3);
  return (Number.isInteger(v) && v >= 0 && v <= 4 ? v : 3) as 0 | 1 | 2 | 3 | 4;
}

export const ORT_CONFIG_ENV = 'FASTKVZIP_ORT_CONFIG';

/**
 * ONNX Runtime session config entries from FASTKVZIP_ORT_CONFIG="key=value,key=value", e.g.
 * `session.use_device_allocator_for_initializers=1` (weights outside the CUDA arena, whose
 * power-of-two growth the Node binding cannot change: it passes only deviceId to the CUDA EP).
 * For benchmarks and A/B runs; returned nested, as the binding's `extra` joins the keys with '.'.
 */
export function ortConfigEntries(value = process.env[ORT_CONFIG_ENV]): Record<string, unknown> | undefined {
  if (!value?.trim()) return undefined;
  const root: Record<string, unknown> = {};
  for (const item of value.split(',').map((x) => x.trim()).filter(Boolean)) {
    const eq = item.indexOf('=');
    const key = eq > 0 ? item.slice(0, eq).trim() : '';
    const parts = key.split('.');
    if (parts.some((k) => !k)) throw new UsageError(`${ORT_CONFIG_ENV}: "${item}" is not key=value (e.g. session.use_device_allocator_for_initializers=1)`);
    let node = root;
    for (const k of parts.slice(0, -1)) {
      if (typeof node[k] === 'string') throw new UsageError(`${ORT_CONFIG_ENV}: "${key}" clashes with a shorter key set before it`);
      node = (node[k] ??= {}) as Record<string, unknown>;
    }
    if (typeof node[parts.at(-1)!] === 'object') throw new UsageError(`${ORT_CONFIG_ENV}: "${key}" clashes with a longer key set before it`);
    node[parts.at(-1)!] = item.slice(eq + 1).trim();
  }
  return root;
}

export function sessionOptions(opts: DeviceOptions): ort.InferenceSession.SessionOptions {
  const o: ort.InferenceSession.SessionOptions = { executionProviders: [providerFor(opts)], graphOptimizationLevel: 'all', logSeverityLevel: logLevel() };
  // onnxruntime-node rejects an explicit undefined here
  if (opts.device === 'cpu' && opts.threads) o.intraOpNumThreads = opts.threads;
  const extra = ortConfigEntries();
  if (extra) o.extra = extra;
  return o;
}

/** Create a session for `modelPath` (a file, or an in-memory model with its name); EP failures become one clear UserError. */
export async function createSession(
  model: string | { bytes: Uint8Array; name: string },
  opts: DeviceOptions,
  extra: Partial<ort.InferenceSession.SessionOptions> = {},
): Promise<ort.InferenceSession> {
  const options = { ...sessionOptions(opts), ...profiling(), ...extra };
  try {
    const session = typeof model === 'string' ? await ort.InferenceSession.create(model, options) : await ort.InferenceSession.create(model.bytes, options);
    if (options.enableProfiling) profiled.push(session);
    return session;
  } catch (e) {
    const modelPath = typeof model === 'string' ? model : model.name;
    const msg = (e as Error).message.split('\n')[0];
    if (opts.device === 'cuda') {
      throw new UserError(
        `--device cuda: could not create a CUDA session for ${modelPath}: ${msg}. ` +
          'Check that the CUDA runtime, cuBLAS and cuDNN 9 libraries that the provider was built for are on LD_LIBRARY_PATH.',
      );
    }
    if (opts.device === 'webgpu') {
      if (/Failed to get a WebGPU adapter/.test(msg)) {
        // ORT's message is a source path and an assertion; the user needs the cause and the fix
        throw new UserError(
          '--device webgpu: no WebGPU adapter (ONNX Runtime\'s WebGPU EP found no Vulkan device). Install the GPU\'s Vulkan driver; ' +
            'without a GPU, Mesa\'s software Vulkan driver lavapipe (Debian/Ubuntu: mesa-vulkan-drivers, Mesa 25 checked) gives a slow adapter for correctness checks (README "GPUs").',
        );
      }
      throw new UserError(`--device webgpu: could not create a WebGPU session for ${modelPath}: ${msg}`);
    }
    throw new UserError(`${modelPath}: ONNX Runtime could not load the model: ${msg}`);
  }
}

// FASTKVZIP_ORT_PROFILE=PREFIX: ONNX Runtime's per-node trace of every session (for benchmarks;
// summarise with bench/profile_summary.py). The trace is written when the process exits.
const profiled: ort.InferenceSession[] = [];
let flushOnExit = false;
function profiling(): Partial<ort.InferenceSession.SessionOptions> {
  const prefix = process.env.FASTKVZIP_ORT_PROFILE;
  if (!prefix) return {};
  if (!flushOnExit) {
    flushOnExit = true;
    process.once('exit', () => {
      for (const s of profiled) {
        try {
          (s as unknown as { endProfiling(): void }).endProfiling();
        } catch {
          // already released: ORT wrote its trace then
        }
      }
    });
  }
  return { enableProfiling: true, profileFilePrefix: prefix };
}

export { ort };
