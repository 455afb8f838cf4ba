// The graph cache's lock (src/util/wait-lock.ts): a second process waits while a live holder has
// it and takes it once released; a lock left by a dead process of this host is taken at once.
import { describe, it, expect } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitForLockSync } from '../../src/util/wait-lock.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-lock-'));
const holder = (pid: number, host = os.hostname()) => JSON.stringify({ pid, host, since: new Date().toISOString() });

describe('waitForLockSync', () => {
  it('a lock held by a live process: the other waits (saying for whom), and takes it once released', async () => {
    const lock = path.join(tmp, 'a.lock');
    writeFileSync(lock, holder(process.pid)); // this test process is the live holder
    const mod = path.join(ROOT, 'dist', 'util', 'wait-lock.js');
    const child = spawn(process.execPath, ['--input-type=module', '-e', `const { waitForLockSync } = await import(${JSON.stringify(mod)}); const t = Date.now(); const release = waitForLockSync(${JSON.stringify(lock)}, 'the test', (l) => console.log(l)); console.log('took after', Date.now() - t); release();`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    await new Promise((r) => setTimeout(r, 800));
    expect(out).toMatch(new RegExp(`waiting for process ${process.pid} on .* to finish the test \\(delete .*a\\.lock if that process is gone\\)`));
    expect(out).not.toMatch(/took after/);
    rmSync(lock); // released
    const code = await new Promise((r) => child.on('exit', r));
    expect(code).toBe(0);
    // it took the lock only after the release (not before it, checked above); how long it waited
    // depends on its own start-up time on a loaded machine, so no figure is asserted
    expect(out).toMatch(/took after \d+/);
    expect(existsSync(lock)).toBe(false); // released by the child too
  });

  it('a lock left by a dead process of this host is taken at once', () => {
    const lock = path.join(tmp, 'b.lock');
    writeFileSync(lock, holder(2 ** 22 + 12345)); // above Linux's pid_max: no such process
    const logs: string[] = [];
    const release = waitForLockSync(lock, 'the test', (l) => logs.push(l));
    expect(logs).toEqual([]);
    expect(existsSync(lock)).toBe(true);
    release();
    expect(existsSync(lock)).toBe(false);
  });
});
