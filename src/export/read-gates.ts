// The one way in for gates: every command that takes gates (`export`, `eval`) reads them here,
// from any file a command writes for gates — `train`'s gates.safetensors, or an export as .pt,
// .safetensors or .onnx — or from a `train` / `run` output folder.
import { existsSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { readGateFile } from '../gate/gate-file.js';
import { GATES_FILE } from '../gate/train.js';
import type { GateSet } from '../gate/types.js';
import { readOnnxGate } from './onnx-gate.js';
import { readGatePt } from './read-gate-pt.js';
import { UserError } from '../util/errors.js';

export const GATE_FILE_EXTENSIONS = ['.safetensors', '.pt', '.onnx'] as const;

/** The gates file behind `arg`: a file, a `train` output folder (gates.safetensors) or a `run` folder (train/gates.safetensors). */
export function resolveGatesFile(arg: string): string {
  if (!existsSync(arg)) throw new UserError(`${arg}: no such gates file or folder`);
  if (!statSync(arg).isDirectory()) return arg;
  for (const rel of [GATES_FILE, path.join('train', GATES_FILE)]) {
    const f = path.join(arg, rel);
    if (existsSync(f)) return f;
  }
  throw new UserError(`${arg}: no ${GATES_FILE} in this folder or its train/ (pass the output of \`fastkvzip train\` or \`run\`, or a ${GATE_FILE_EXTENSIONS.join('/')} file)`);
}

export interface ReadGatesOptions {
  /** model layer of each gate of a .pt file, which does not record them (default 0, 1, 2, ...) */
  layers?: number[];
}

/** Read any gates file (see resolveGatesFile for folders) into a GateSet with fp32 values. */
export async function readGates(arg: string, o: ReadGatesOptions = {}): Promise<{ file: string; gates: GateSet }> {
  const file = resolveGatesFile(arg);
  const ext = path.extname(file).toLowerCase();
  if (ext === '.safetensors') return { file, gates: readGateFile(file) };
  if (ext === '.pt') return { file, gates: await readGatePt(file, { layers: o.layers }) };
  if (ext === '.onnx') return { file, gates: readOnnxGate(file) };
  throw new UserError(`${file}: not a gates file (expected ${GATE_FILE_EXTENSIONS.join(', ')})`);
}
