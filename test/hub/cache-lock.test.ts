// Several processes resolving one hub model into one cache (the workers of `extract --gpus`,
// Slurm array tasks on a shared HF_HOME): one downloads, the others wait and find the files; a
// lock left by a killed process is taken over once it goes stale. Real processes (dist/, as the
// CLI runs it) against the local fake hub; nothing leaves this machine.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { writeTinyModel } from '../helpers/tiny-model.js';
import { hubLockPath, HUB_LOCK_STALE_MS } from '../../src/hub/cache-lock.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TOKEN = 'hf_test_secret_token_42';
const REPO = 'fake-org/tiny-qwen3';

let work: string;
let hub: FakeHub;
let files: Record<string, Buffer>;
let script: string;

beforeEach(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'fkz-hub-lock-'));
  hub = await startFakeHub({ token: TOKEN });
  const src = path.join(work, 'src');
  await writeTinyModel(src, 'qwen3');
  files = Object.fromEntries(readdirSync(src).map((f) => [f, readFileSync(path.join(src, f))]));
  hub.addRepo(REPO, files);
  script = path.join(work, 'resolve.mjs');
  writeFileSync(script, `import { resolveModel } from ${JSON.stringify(path.join(ROOT, 'dist/hub/resolve-model.js'))};\nconst r = await resolveModel(${JSON.stringify(REPO)});\nprocess.stdout.write(JSON.stringify(r));\n`);
});

afterEach(async () => {
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

const env = () => ({ PATH: process.env.PATH, HOME: work, HF_HOME: path.join(work, 'hf'), HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN });
const cache = () => path.join(work, 'hf', 'hub');
const repoFolder = () => path.join(cache(), 'models--fake-org--tiny-qwen3');

function resolveInChild(): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }> } {
  const t0 = Date.now();
  const child = spawn(process.execPath, [script], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string; seconds: number }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr, seconds: (Date.now() - t0) / 1000 })));
  return { child, done };
}

/** The weights' whole-file downloads from the CDN (not the range probes). */
const weightDownloads = () => {
  const sha = createHash('sha256').update(files['model.safetensors']!).digest('hex');
  return hub.requests.filter((r) => r.server === 'cdn' && r.method === 'GET' && r.url.endsWith(sha) && !r.headers.range).length;
};

function expectWholeSnapshot(dir: string): void {
  for (const [f, content] of Object.entries(files)) expect(readFileSync(path.join(dir, f)).equals(content), f).toBe(true);
  expect(readdirSync(path.join(repoFolder(), 'blobs')).filter((b) => b.endsWith('.incomplete'))).toEqual([]);
  expect(existsSync(hubLockPath(cache(), { type: 'model', name: REPO }))).toBe(false); // released
}

describe('hub cache lock', () => {
  it('three processes fetching one model into one cache at once: one downloads, the others wait, every file whole', async () => {
    hub.setCdnPause(3000); // the weights take 3 s: the others arrive while the first is fetching
    const runs = await Promise.all([resolveInChild(), resolveInChild(), resolveInChild()].map((r) => r.done));
    for (const r of runs) expect(r.code, r.stderr).toBe(0);
    const dirs = new Set(runs.map((r) => JSON.parse(r.stdout).dir as string));
    expect(dirs.size).toBe(1);
    expect(weightDownloads()).toBe(1);
    expect(runs.filter((r) => /waiting for another process fetching fake-org\/tiny-qwen3/.test(r.stderr)).length).toBeGreaterThanOrEqual(1);
    expect(runs.filter((r) => /downloading fake-org\/tiny-qwen3 model\.safetensors/.test(r.stderr))).toHaveLength(1);
    expectWholeSnapshot([...dirs][0]!);
    for (const r of runs) expect(r.stderr).not.toContain(TOKEN);
  }, 60_000);

  it('a lock left by a killed process (mid-download) is taken over once stale; the next process fetches the model whole', async () => {
    hub.setCdnPause(60_000); // the first process stalls mid-file
    const first = resolveInChild();
    const lock = hubLockPath(cache(), { type: 'model', name: REPO });
    // wait until it is mid-download of the weights: lock held, half a blob written
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const t = setInterval(() => {
        const blobs = existsSync(path.join(repoFolder(), 'blobs')) ? readdirSync(path.join(repoFolder(), 'blobs')) : [];
        if (existsSync(lock) && blobs.some((b) => b.endsWith('.incomplete'))) {
          clearInterval(t);
          resolve();
        } else if (Date.now() - t0 > 30_000) {
          clearInterval(t);
          reject(new Error('the first process never got mid-download'));
        }
      }, 50);
    });
    first.child.kill('SIGKILL');
    expect((await first.done).code).toBe(null);
    expect(existsSync(lock)).toBe(true); // nobody removed it
    hub.setCdnPause(0);
    const second = await resolveInChild().done;
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/waiting for another process fetching fake-org\/tiny-qwen3 .*taken over if its holder stops for 10 s/);
    // it waited for the lock to go stale, no longer
    expect(second.seconds).toBeGreaterThan(HUB_LOCK_STALE_MS / 1000 - 3);
    expect(second.seconds).toBeLessThan(HUB_LOCK_STALE_MS / 1000 + 20);
    expectWholeSnapshot(JSON.parse(second.stdout).dir);
  }, 90_000);
});
