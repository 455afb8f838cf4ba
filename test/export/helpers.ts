// Shared fixtures for the export tests: deterministic gate sets, temp dirs, and the local
// PyTorch (/usr/bin/python3) used as an independent oracle when it is importable.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { GateLayerParams, GateModelDtype, GateSet } from '../../src/gate/types.js';

/** mulberry32: small seeded PRNG so fixtures are identical run to run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface FixtureDims {
  D: number;
  H: number;
  G: number;
  r: number;
  S: number;
  layers: number[];
  modelDtype: GateModelDtype;
  seed?: number;
  metrics?: boolean;
}

export function makeGateSet(d: FixtureDims): GateSet {
  const rand = rng(d.seed ?? 1);
  const arr = (n: number, scale: number, offset = 0): Float32Array => Float32Array.from({ length: n }, () => offset + (rand() * 2 - 1) * scale);
  const params: GateLayerParams[] = d.layers.map(() => ({
    'q_proj.weight': arr(d.H * d.G * d.r * d.D, 1 / Math.sqrt(d.D)),
    'q_proj.bias': arr(d.H * d.G * d.r, 1 / Math.sqrt(d.D)),
    'k_proj.weight': arr(d.H * d.r * d.D, 1 / Math.sqrt(d.D)),
    'q_norm.weight': arr(d.r, 0.2, 1),
    'k_norm.weight': arr(d.r, 0.2, 1),
    b: arr(d.H * d.G, 0.5),
    k_base: arr(d.H * d.S * d.r, 0.5),
  }));
  const gates: GateSet = { D: d.D, H: d.H, G: d.G, r: d.r, S: d.S, layers: [...d.layers], params, modelDtype: d.modelDtype };
  if (d.metrics !== false) {
    const table = (evals: number) => Array.from({ length: evals }, () => d.layers.map(() => rand()));
    gates.metrics = { loss: table(3), acc: table(3), lossTrain: table(3), accTrain: table(3) };
  }
  return gates;
}

export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), `fastkvzip-${tag}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const PYTHON = '/usr/bin/python3';

/** Whether /usr/bin/python3 can import torch and numpy; `reason` says why not. */
export const torchPython: { ok: boolean; reason: string } = (() => {
  const r = spawnSync(PYTHON, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8', timeout: 60_000 });
  if (r.error) return { ok: false, reason: `${PYTHON} not runnable (${r.error.message})` };
  if (r.status !== 0) return { ok: false, reason: `${PYTHON} cannot import torch/numpy: ${(r.stderr || '').trim().split('\n').pop()}` };
  return { ok: true, reason: `torch ${r.stdout.trim()}` };
})();
if (!torchPython.ok) console.warn(`[export tests] PyTorch checks skipped: ${torchPython.reason}`);

/** Run a Python script (written to `dir`) with args; returns parsed JSON from its last stdout line. */
export function runPython(dir: string, name: string, script: string, args: string[]): any {
  const file = path.join(dir, name);
  writeFileSync(file, script);
  const r = spawnSync(PYTHON, [file, ...args], { encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`python ${name} failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!);
}

/** Raw little-endian fp32 dump of every tensor (in GATE_STATE_KEYS order per layer) for Python to compare against. */
export function dumpF32(file: string, arrays: Float32Array[]): void {
  const total = arrays.reduce((a, x) => a + x.byteLength, 0);
  const buf = Buffer.alloc(total);
  let at = 0;
  for (const a of arrays) {
    buf.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  }
  writeFileSync(file, buf);
}
