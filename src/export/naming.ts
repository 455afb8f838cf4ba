// File layout of published gates (docs/method.md §5): `<model basename, lower case>/q{G}_dim{r}_sink{S}.pt`.
import { UserError } from '../util/errors.js';

export type GateFileFormat = 'pt' | 'safetensors' | 'onnx';

/** `q{G}_dim{r}_sink{S}.{ext}`, e.g. `q4_dim16_sink16.pt`. */
export function gateFileName(gates: { G: number; r: number; S: number }, format: GateFileFormat = 'pt'): string {
  return `q${gates.G}_dim${gates.r}_sink${gates.S}.${format}`;
}

/** The model id's last path component in lower case: `Qwen/Qwen3-8B` -> `qwen3-8b`. */
export function gateFolderName(modelId: string): string {
  const base = modelId.replace(/[\\/]+$/, '').split(/[\\/]/).pop() ?? '';
  if (base === '' || base === '.' || base === '..') throw new UserError(`cannot name a gate folder after model id "${modelId}"`);
  return base.toLowerCase();
}

/** `qwen3-8b/q4_dim16_sink16.pt` (always with `/`, as hub paths are). */
export function gateRelativePath(modelId: string, gates: { G: number; r: number; S: number }, format: GateFileFormat = 'pt'): string {
  return `${gateFolderName(modelId)}/${gateFileName(gates, format)}`;
}

/**
 * The model id as published (card title, base_model, file metadata): a hub id stays as is; a
 * local folder becomes its name, so no local path leaves the machine. `commit` is the hub
 * commit recorded at extraction ("" for local folders).
 */
export function publicModelId(modelId: string, commit: string | undefined): string {
  if (commit) return modelId;
  return modelId.replace(/[\\/]+$/, '').split(/[\\/]/).pop() || modelId;
}
