// The command line a multi-worker command hands its workers: its own arguments as typed, less
// the flags each worker gets set for it (--out, --device, …). Working on the typed arguments
// (not re-printing the parsed values) keeps every other flag exactly as the user wrote it.
import type { Command } from 'commander';
import { UsageError } from '../util/errors.js';
import { parseGpus, workerSlots, type WorkerSlot } from '../scale/index.js';

/** The arguments after the subcommand's name, as typed (commander keeps them on the program). */
export function typedArgs(cmd: Command): string[] {
  // rawArgs is public at run time but not in commander's typings
  const raw: string[] = (cmd.parent as unknown as { rawArgs?: string[] } | null)?.rawArgs ?? [];
  const at = raw.indexOf(cmd.name(), 2);
  return at < 0 ? [] : raw.slice(at + 1);
}

/** `args` without the options named in `drop` (long names, e.g. "--out") and their values. */
export function dropOptions(args: string[], cmd: Command, drop: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const tok = args[i]!;
    if (tok === '--') {
      out.push(...args.slice(i));
      break;
    }
    const name = tok.startsWith('--') ? tok.split('=')[0]! : tok;
    const opt = cmd.options.find((x) => x.long === name || x.short === name);
    const takesValue = !!opt && (opt.required || opt.optional) && !tok.includes('=');
    const hasValue = takesValue && i + 1 < args.length && (opt!.required || !args[i + 1]!.startsWith('-'));
    if (drop.includes(opt?.long ?? name)) {
      if (hasValue) i++;
      continue;
    }
    out.push(tok);
    if (hasValue) out.push(args[++i]!);
  }
  return out;
}

/** The workers of --gpus / --workers, or null for a one-process run. */
export function workerSlotsFrom(o: Record<string, any>, cmd: Command, shardFlag = '--shard'): WorkerSlot[] | null {
  if (o.gpus === undefined && o.workers === undefined) return null;
  if (o.gpus !== undefined && o.workers !== undefined) throw new UsageError('--gpus and --workers: give one (--gpus lists the GPUs, --workers counts processes on --device)');
  if (o.shard !== undefined) throw new UsageError(`${shardFlag} with ${o.gpus !== undefined ? '--gpus' : '--workers'}: the workers take the parts of one host and set ${shardFlag} themselves`);
  if (o.gpus !== undefined) {
    if (cmd.getOptionValueSource('device') === 'cli' && o.device !== 'cuda') throw new UsageError(`--gpus runs on CUDA; drop --device ${o.device} (or use --workers n for processes on it)`);
    if (cmd.getOptionValueSource('deviceId') === 'cli') throw new UsageError('--gpus lists the GPUs; drop --device-id');
    return parseGpus(o.gpus);
  }
  return workerSlots(o.workers, o.device, o.deviceId);
}
