// The re-run with glibc tunables (src/util/host-malloc.ts): when it happens and what the child gets.
import { describe, it, expect } from 'vitest';
import { shouldRelaunch, relaunchEnv, hostMallocReuses, REUSE_TUNABLES } from '../../src/util/host-malloc.js';

describe('host malloc re-run', () => {
  it('happens on Linux when wanted (auto), always with on, never with off, never twice', () => {
    expect(shouldRelaunch(true, {}, 'linux')).toBe(true);
    expect(shouldRelaunch(false, {}, 'linux')).toBe(false);
    expect(shouldRelaunch(false, { FASTKVZIP_HOST_MALLOC: 'on' }, 'linux')).toBe(true);
    expect(shouldRelaunch(true, { FASTKVZIP_HOST_MALLOC: 'off' }, 'linux')).toBe(false);
    expect(shouldRelaunch(true, {}, 'darwin')).toBe(false);
    expect(shouldRelaunch(true, relaunchEnv({}), 'linux')).toBe(false); // the child does not re-run again
  });

  it('appends the tunables to any the user set', () => {
    expect(relaunchEnv({}).GLIBC_TUNABLES).toBe(REUSE_TUNABLES);
    expect(relaunchEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }).GLIBC_TUNABLES).toBe(`glibc.malloc.arena_max=2:${REUSE_TUNABLES}`);
    expect(hostMallocReuses(relaunchEnv({ GLIBC_TUNABLES: 'glibc.malloc.arena_max=2' }))).toBe(true);
    expect(hostMallocReuses({})).toBe(false);
  });
});
