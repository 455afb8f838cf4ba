// Pieces every command shares: device flags, opening a model (hub or folder) with its graphs,
// JSON output, and turning errors into one line + exit code.
import { Option, type Command } from 'commander';
import { UserError, UsageError } from '../util/errors.js';
import { parseDevice, type DeviceOptions } from '../runtime/session.js';

export function addDeviceOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--device <device>', 'execution provider').choices(['cpu', 'cuda', 'webgpu']).default('cpu'))
    .option('--device-id <n>', 'GPU index for cuda', (v) => intArg(v, '--device-id'), 0)
    .option('--threads <n>', 'CPU threads (0 = all cores)', (v) => intArg(v, '--threads'), 0)
    .addOption(new Option('--dtype <dtype>', 'compute dtype of the model graphs (default: fp32 on CPU, the model dtype on GPUs)').choices(['float32', 'float16', 'bfloat16']));
}

export function deviceFrom(opts: { device: string; deviceId?: number; threads?: number }): DeviceOptions {
  return { device: parseDevice(opts.device), deviceId: opts.deviceId, threads: opts.threads };
}

export function intArg(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`${name} must be a non-negative integer (got "${v}")`);
  return n;
}

export function positiveInt(v: string, name: string): number {
  const n = intArg(v, name);
  if (n === 0) throw new UsageError(`${name} must be positive`);
  return n;
}

export function floatArg(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isFinite(n)) throw new UsageError(`${name} must be a number (got "${v}")`);
  return n;
}

export function positiveFloat(v: string, name: string): number {
  const n = floatArg(v, name);
  if (!(n > 0)) throw new UsageError(`${name} must be positive (got "${v}")`);
  return n;
}

/** A number in a range: [min, max] by default, open ends on request. */
export function fractionArg(v: string, name: string, r: { min: number; max: number; minOpen?: boolean; maxOpen?: boolean }): number {
  const n = floatArg(v, name);
  const lowOk = r.minOpen ? n > r.min : n >= r.min;
  const highOk = r.maxOpen ? n < r.max : n <= r.max;
  if (!lowOk || !highOk) throw new UsageError(`${name} must be in ${r.minOpen ? '(' : '['}${r.min}, ${r.max}${r.maxOpen ? ')' : ']'} (got "${v}")`);
  return n;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}
