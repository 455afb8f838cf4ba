// `fastkvzip export --push` uploads the export folder (model card + gate file) to the hub with
// the token from HF_TOKEN — against a fake hub on 127.0.0.1, never the real one.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile } from '../../src/gate/gate-file.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const TOKEN = 'hf_push_secret_123';
let hub: FakeHub;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-push-'));

beforeAll(async () => {
  hub = await startFakeHub({ token: TOKEN });
});
afterAll(async () => hub.close());

/** The CLI in a child process (async, so the fake hub in this process keeps serving). */
function fkz(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // online towards the fake hub only (CI runs with HF_HUB_OFFLINE=1 for everything else)
    const { HF_HUB_OFFLINE: _offline, ...rest } = process.env;
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...rest, HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, HF_HOME: path.join(tmp, 'hf') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('export --push', () => {
  it('uploads the card and the .pt in the public layout, token only as Bearer, never printed', async () => {
    const gates = { ...makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } };
    const trainOut = path.join(tmp, 'train');
    await writeGateFile(path.join(trainOut, 'gates.safetensors'), gates);
    const r = await fkz(['export', '--gates', trainOut, '--out', path.join(tmp, 'export'), '--push', 'me/qwen3-gates', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.pushed.repo).toBe('me/qwen3-gates');
    const remote = hub.files('me/qwen3-gates')!;
    expect([...remote.keys()]).toEqual(expect.arrayContaining(['README.md', 'qwen3-8b/q2_dim16_sink16.pt']));
    for (const req of hub.requests.filter((q) => q.method !== 'PUT')) expect(req.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });
});
