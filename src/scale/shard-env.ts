// `--shard auto`: this process's part index and count, read from the scheduler that started it.
//
// Sources, all read (a process may see several, e.g. torchrun inside a Slurm array task):
//   Slurm job array      SLURM_ARRAY_TASK_ID, with SLURM_ARRAY_TASK_COUNT and/or
//                        SLURM_ARRAY_TASK_MIN/MAX (arrays may start at 1: index = id - min)
//   Kubernetes Indexed   JOB_COMPLETION_INDEX, with the count from --shard-count or
//   Job                  FASTKVZIP_SHARD_COUNT (a Job does not expose its `completions`)
//   torchrun / MPI-style RANK and WORLD_SIZE
// Every source present must give the same part; none, or a disagreement, is a usage error.
import { UsageError } from '../util/errors.js';

export type ShardScheduler = 'slurm-array' | 'kubernetes-indexed-job' | 'rank-world-size' | 'flag';

/** Where a part's index and count came from (recorded in the store's manifest). */
export interface ShardSource {
  scheduler: ShardScheduler;
  /** the environment variables (or flags) read, as found */
  vars: Record<string, string>;
}

export interface AutoShard {
  index: number;
  count: number;
  source: ShardSource;
}

/** Environment variables the count of a Kubernetes Indexed Job can come from (besides --shard-count). */
export const SHARD_COUNT_ENV = 'FASTKVZIP_SHARD_COUNT';

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  if (!/^\d+$/.test(raw.trim())) throw new UsageError(`--shard auto: ${name}=${JSON.stringify(raw)} is not a non-negative integer`);
  return Number(raw.trim());
}

function pick(env: Env, names: string[]): Record<string, string> {
  return Object.fromEntries(names.filter((n) => env[n] !== undefined && env[n]!.trim() !== '').map((n) => [n, env[n]!.trim()]));
}

function checked(index: number, count: number, what: string): { index: number; count: number } {
  if (count < 1) throw new UsageError(`--shard auto: ${what} gives a count of ${count}; need at least 1`);
  if (index >= count) throw new UsageError(`--shard auto: ${what} gives index ${index} for ${count} part(s); need 0 <= index < count`);
  return { index, count };
}

function fromSlurm(env: Env): AutoShard | null {
  const id = intVar(env, 'SLURM_ARRAY_TASK_ID');
  if (id === undefined) return null;
  const vars = pick(env, ['SLURM_ARRAY_TASK_ID', 'SLURM_ARRAY_TASK_COUNT', 'SLURM_ARRAY_TASK_MIN', 'SLURM_ARRAY_TASK_MAX', 'SLURM_ARRAY_TASK_STEP', 'SLURM_ARRAY_JOB_ID']);
  const count = intVar(env, 'SLURM_ARRAY_TASK_COUNT');
  const min = intVar(env, 'SLURM_ARRAY_TASK_MIN');
  const max = intVar(env, 'SLURM_ARRAY_TASK_MAX');
  const step = intVar(env, 'SLURM_ARRAY_TASK_STEP');
  if (count === undefined && (min === undefined || max === undefined)) {
    throw new UsageError('--shard auto: SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor SLURM_ARRAY_TASK_MIN/MAX is; pass --shard i/n');
  }
  const lo = min ?? 0;
  if (step !== undefined && step !== 1) throw new UsageError(`--shard auto: the Slurm array has a step of ${step} (SLURM_ARRAY_TASK_STEP); use a contiguous array (--array=0-${(count ?? 1) - 1}) so task ids map to parts`);
  if (min !== undefined && max !== undefined && count !== undefined && max - min + 1 !== count) {
    throw new UsageError(`--shard auto: the Slurm array is not contiguous (SLURM_ARRAY_TASK_MIN=${min}, MAX=${max}, COUNT=${count}); use --array=${min}-${min + count - 1} (a % throttle is fine)`);
  }
  const n = count ?? max! - min! + 1;
  if (id < lo) throw new UsageError(`--shard auto: SLURM_ARRAY_TASK_ID=${id} is below SLURM_ARRAY_TASK_MIN=${lo}`);
  return { ...checked(id - lo, n, 'the Slurm array'), source: { scheduler: 'slurm-array', vars } };
}

function fromKubernetes(env: Env, countFlag: number | undefined): AutoShard | null {
  const index = intVar(env, 'JOB_COMPLETION_INDEX');
  if (index === undefined) return null;
  const countEnv = intVar(env, SHARD_COUNT_ENV);
  if (countFlag !== undefined && countEnv !== undefined && countFlag !== countEnv) {
    throw new UsageError(`--shard auto: --shard-count ${countFlag} and ${SHARD_COUNT_ENV}=${countEnv} disagree`);
  }
  const count = countFlag ?? countEnv;
  if (count === undefined) throw new UsageError(`--shard auto: JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but the part count is not: pass --shard-count <the Job's completions> or set ${SHARD_COUNT_ENV}`);
  const vars = pick(env, ['JOB_COMPLETION_INDEX', SHARD_COUNT_ENV]);
  if (countFlag !== undefined) vars['--shard-count'] = String(countFlag);
  return { ...checked(index, count, 'the Kubernetes Indexed Job'), source: { scheduler: 'kubernetes-indexed-job', vars } };
}

function fromRank(env: Env): AutoShard | null {
  const rank = intVar(env, 'RANK');
  const world = intVar(env, 'WORLD_SIZE');
  if (rank === undefined && world === undefined) return null;
  if (rank === undefined || world === undefined) throw new UsageError(`--shard auto: ${rank === undefined ? 'WORLD_SIZE is set without RANK' : 'RANK is set without WORLD_SIZE'}`);
  return { ...checked(rank, world, 'RANK/WORLD_SIZE'), source: { scheduler: 'rank-world-size', vars: pick(env, ['RANK', 'WORLD_SIZE', 'LOCAL_RANK']) } };
}

const describe = (s: AutoShard) => `${s.source.scheduler} (${Object.entries(s.source.vars).map(([k, v]) => `${k}=${v}`).join(', ')}) says part ${s.index}/${s.count}`;

/**
 * The part this process extracts under `--shard auto`. `countFlag`: --shard-count, the part
 * count for a Kubernetes Indexed Job (and, when given, a check on every other source).
 */
export function resolveAutoShard(env: Env, countFlag?: number): AutoShard {
  const found = [fromSlurm(env), fromKubernetes(env, countFlag), fromRank(env)].filter((s): s is AutoShard => s !== null);
  if (found.length === 0) {
    throw new UsageError(
      '--shard auto: no scheduler part found in the environment (a Slurm job array sets SLURM_ARRAY_TASK_ID, a Kubernetes Indexed Job JOB_COMPLETION_INDEX, torchrun RANK/WORLD_SIZE); pass --shard i/n outside a scheduler',
    );
  }
  const first = found[0]!;
  for (const other of found.slice(1)) {
    if (other.index !== first.index || other.count !== first.count) throw new UsageError(`--shard auto: the schedulers disagree: ${describe(first)}, ${describe(other)}`);
  }
  if (countFlag !== undefined && first.count !== countFlag) throw new UsageError(`--shard auto: --shard-count ${countFlag} disagrees with ${describe(first)}`);
  return first;
}
