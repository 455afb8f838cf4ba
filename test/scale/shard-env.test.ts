// `--shard auto`: the part from each scheduler's environment, and the clear errors (exit 2).
import { describe, it, expect } from 'vitest';
import { resolveAutoShard } from '../../src/scale/index.js';
import { UsageError } from '../../src/util/errors.js';

const usage = (f: () => unknown, msg: RegExp) => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(UsageError);
  expect((err as UsageError).exitCode).toBe(2);
  expect((err as Error).message).toMatch(msg);
};

describe('Slurm job arrays', () => {
  it('an array from 0: the task id with SLURM_ARRAY_TASK_COUNT', () => {
    const s = resolveAutoShard({ SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '8', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '7', SLURM_ARRAY_JOB_ID: '41' });
    expect([s.index, s.count]).toEqual([3, 8]);
    expect(s.source).toEqual({ scheduler: 'slurm-array', vars: { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '8', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '7', SLURM_ARRAY_JOB_ID: '41' } });
  });
  it('an array from 1 (--array=1-4): index = id - min; min/max without count', () => {
    expect(resolveAutoShard({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '4' })).toMatchObject({ index: 0, count: 4 });
    expect(resolveAutoShard({ SLURM_ARRAY_TASK_ID: '4', SLURM_ARRAY_TASK_COUNT: '4', SLURM_ARRAY_TASK_MIN: '1', SLURM_ARRAY_TASK_MAX: '4' })).toMatchObject({ index: 3, count: 4 });
  });
  it('a stepped or holed array, a missing count, a bad value: usage errors', () => {
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '4', SLURM_ARRAY_TASK_STEP: '2' }), /step of 2/);
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '2', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '0', SLURM_ARRAY_TASK_MAX: '5' }), /not contiguous/);
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '2' }), /neither SLURM_ARRAY_TASK_COUNT nor/);
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: 'x', SLURM_ARRAY_TASK_COUNT: '2' }), /SLURM_ARRAY_TASK_ID="x" is not a non-negative integer/);
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_COUNT: '2' }), /index 5 for 2 part/);
  });
});

describe('Kubernetes Indexed Jobs', () => {
  it('JOB_COMPLETION_INDEX with the count from --shard-count or FASTKVZIP_SHARD_COUNT', () => {
    const a = resolveAutoShard({ JOB_COMPLETION_INDEX: '2' }, 4);
    expect([a.index, a.count, a.source.scheduler]).toEqual([2, 4, 'kubernetes-indexed-job']);
    expect(a.source.vars).toEqual({ JOB_COMPLETION_INDEX: '2', '--shard-count': '4' });
    const b = resolveAutoShard({ JOB_COMPLETION_INDEX: '0', FASTKVZIP_SHARD_COUNT: '3' });
    expect([b.index, b.count]).toEqual([0, 3]);
  });
  it('no count, a disagreeing count, an index past the count: usage errors', () => {
    usage(() => resolveAutoShard({ JOB_COMPLETION_INDEX: '1' }), /--shard-count <the Job's completions> or set FASTKVZIP_SHARD_COUNT/);
    usage(() => resolveAutoShard({ JOB_COMPLETION_INDEX: '1', FASTKVZIP_SHARD_COUNT: '3' }, 4), /--shard-count 4 and FASTKVZIP_SHARD_COUNT=3 disagree/);
    usage(() => resolveAutoShard({ JOB_COMPLETION_INDEX: '4' }, 4), /index 4 for 4 part/);
  });
});

describe('RANK / WORLD_SIZE', () => {
  it('a torchrun-style pair', () => {
    const s = resolveAutoShard({ RANK: '1', WORLD_SIZE: '2', LOCAL_RANK: '1' });
    expect([s.index, s.count, s.source.scheduler]).toEqual([1, 2, 'rank-world-size']);
  });
  it('half a pair, or a zero world: usage errors', () => {
    usage(() => resolveAutoShard({ RANK: '0' }), /RANK is set without WORLD_SIZE/);
    usage(() => resolveAutoShard({ WORLD_SIZE: '2' }), /WORLD_SIZE is set without RANK/);
    usage(() => resolveAutoShard({ RANK: '0', WORLD_SIZE: '0' }), /count of 0/);
  });
});

describe('none, several, disagreeing', () => {
  it('no scheduler in the environment: a usage error naming what was looked for', () => {
    usage(() => resolveAutoShard({ PATH: '/usr/bin' }), /no scheduler part found .*SLURM_ARRAY_TASK_ID.*JOB_COMPLETION_INDEX.*RANK\/WORLD_SIZE.*--shard i\/n/);
  });
  it('several that agree: the first (Slurm) is recorded', () => {
    const s = resolveAutoShard({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '2', RANK: '1', WORLD_SIZE: '2' });
    expect([s.index, s.count, s.source.scheduler]).toEqual([1, 2, 'slurm-array']);
  });
  it('several that disagree, or a --shard-count that disagrees: usage errors naming both', () => {
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '2', RANK: '0', WORLD_SIZE: '2' }), /disagree: slurm-array .* part 1\/2, rank-world-size .* part 0\/2/);
    usage(() => resolveAutoShard({ SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '2' }, 3), /--shard-count 3 disagrees with slurm-array/);
  });
});
