// `--gpus all|i,j` and `--workers n`: counting GPUs without a GPU library, and the typed command
// line the workers get (every flag as the user wrote it, less the ones each worker gets set).
import { describe, it, expect } from 'vitest';
import { Command } from 'commander';
import { countGpus, parseGpus, workerSlots, threadsPerWorker, partDirs } from '../../src/scale/index.js';
import { dropOptions } from '../../src/cli/worker-args.js';
import { extractCommand } from '../../src/cli/extract.js';

const smi = (stdout: string, status = 0) => () => ({ status, stdout });
const missing = () => ({ status: null, stdout: '', error: Object.assign(new Error('spawn nvidia-smi ENOENT'), { code: 'ENOENT' }) });

describe('counting GPUs', () => {
  it('CUDA_VISIBLE_DEVICES first (indices, UUIDs), up to its first invalid entry', () => {
    expect(countGpus({ CUDA_VISIBLE_DEVICES: '2,3' }, missing)).toEqual({ count: 2, from: 'CUDA_VISIBLE_DEVICES' });
    expect(countGpus({ CUDA_VISIBLE_DEVICES: 'GPU-8f6a1c2e-1111-2222-3333-444455556666' }, missing).count).toBe(1);
    expect(countGpus({ CUDA_VISIBLE_DEVICES: '0,-1,1' }, missing).count).toBe(1);
    expect(() => countGpus({ CUDA_VISIBLE_DEVICES: '' }, missing)).toThrow(/hides every GPU/);
  });
  it('else the lines of nvidia-smi -L', () => {
    const out = 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaa)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-bbb)\n';
    expect(countGpus({}, smi(out))).toEqual({ count: 2, from: 'nvidia-smi -L' });
    expect(parseGpus('all', {}, smi(out))).toEqual([{ device: 'cuda', deviceId: 0 }, { device: 'cuda', deviceId: 1 }]);
  });
  it('neither: a clear usage error (exit 2)', () => {
    expect(() => countGpus({}, missing)).toThrow(/cannot count the GPUs \(CUDA_VISIBLE_DEVICES is not set and nvidia-smi is not installed\); list them/);
    expect(() => countGpus({}, smi('', 9))).toThrow(/nvidia-smi -L exited with 9/);
    expect(() => countGpus({}, smi('No devices were found\n'))).toThrow(/lists no GPU/);
    try {
      countGpus({}, missing);
    } catch (e) {
      expect((e as { exitCode: number }).exitCode).toBe(2);
    }
  });
});

describe('worker slots', () => {
  it('a GPU list, a GPU listed twice (two workers on one GPU), bad lists', () => {
    expect(parseGpus('0,0')).toEqual([{ device: 'cuda', deviceId: 0 }, { device: 'cuda', deviceId: 0 }]);
    expect(parseGpus('1, 3')).toEqual([{ device: 'cuda', deviceId: 1 }, { device: 'cuda', deviceId: 3 }]);
    expect(() => parseGpus('0,x')).toThrow(/"all" or a list of GPU indices/);
    expect(() => parseGpus('')).toThrow(/"all" or a list/);
  });
  it('--workers n on the CPU or one GPU; CPU threads split among the workers', () => {
    expect(workerSlots(2, 'cpu', 0)).toEqual([{ device: 'cpu', deviceId: null }, { device: 'cpu', deviceId: null }]);
    expect(workerSlots(2, 'cuda', 1)).toEqual([{ device: 'cuda', deviceId: 1 }, { device: 'cuda', deviceId: 1 }]);
    expect(() => workerSlots(2, 'webgpu', 0)).toThrow(/cpu or cuda/);
    expect(threadsPerWorker(0, 2, 16)).toBe(8);
    expect(threadsPerWorker(0, 3, 2)).toBe(1);
    expect(threadsPerWorker(1, 2, 16)).toBe(1); // asked for: kept
    expect(partDirs('/x/store', 2).map((d) => d.replace(/\\/g, '/'))).toEqual(['/x/store.parts/part-0-of-2', '/x/store.parts/part-1-of-2']);
  });
});

describe('the workers\' command line', () => {
  it('drops the flags each worker gets set, values included, and keeps the rest as typed', () => {
    const cmd: Command = extractCommand();
    const typed = ['--model', 'm', '--out', 'o', '--workers', '2', '--max-tokens=500', '--no-resume', '--json', '--threads', '1', '--data', 'sotu', '--shard-count', '3'];
    expect(dropOptions(typed, cmd, ['--out', '--workers', '--json', '--threads', '--shard-count'])).toEqual(['--model', 'm', '--max-tokens=500', '--no-resume', '--data', 'sotu']);
    expect(dropOptions(['--out=o', '--model', 'm'], cmd, ['--out'])).toEqual(['--model', 'm']);
  });
});
