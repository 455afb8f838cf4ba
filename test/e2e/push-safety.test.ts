// Hostile inputs, family "hub push": `export --push` uploads exactly the files this export wrote
// (never hidden files, unrelated files or symlink targets), creates repos private by default,
// and never prints the token, even when the Hub echoes it back. Against servers on 127.0.0.1.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn } from 'node:child_process';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { makeGateSet } from '../export/helpers.js';
import { writeGateFile as writeGateSetFile } from '../../src/gate/gate-file.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const BIN = path.join(ROOT, 'bin', 'fastkvzip.js');
const TOKEN = 'hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345678';
let hub: FakeHub;
const tmp = mkdtempSync(path.join(os.tmpdir(), 'fkz-push-safety-'));
const trainOut = path.join(tmp, 'train');

beforeAll(async () => {
  hub = await startFakeHub({ token: TOKEN });
  const gates = { ...makeGateSet({ D: 32, H: 2, G: 2, r: 16, S: 16, layers: [0, 1], modelDtype: 'bfloat16' }), meta: { model_id: 'Qwen/Qwen3-8B' } };
  await writeGateSetFile(path.join(trainOut, 'gates.safetensors'), gates);
});
afterAll(async () => hub.close());

function fkz(args: string[], endpoint: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const { HF_HUB_OFFLINE: _offline, ...rest } = process.env;
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...rest, HF_ENDPOINT: endpoint, HF_TOKEN: TOKEN, HF_HOME: path.join(tmp, 'hf') } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A folder that already holds secrets and unrelated files, and symlinks leading out of it. */
function hostileOut(name: string): string {
  const out = path.join(tmp, name);
  mkdirSync(path.join(out, 'qwen3-8b'), { recursive: true });
  writeFileSync(path.join(out, '.env'), `HF_TOKEN=${TOKEN}\n`);
  writeFileSync(path.join(out, 'notes.txt'), 'unpublished notes');
  writeFileSync(path.join(tmp, 'outside.txt'), 'private file outside the export folder');
  symlinkSync(path.join(tmp, 'outside.txt'), path.join(out, 'leak.txt'));
  symlinkSync(path.join(tmp, 'hf'), path.join(out, 'cache-link'));
  return out;
}

/** Anonymous probe: is the repo visible without a token? */
async function isPublic(repo: string): Promise<boolean> {
  const r = await fetch(`${hub.url}/api/models/${repo}/revision/main`);
  return r.status === 200;
}

describe('export --push uploads only what the export wrote', () => {
  it('leaves hidden, unrelated and symlinked files alone, lists what it uploads, private by default', async () => {
    const out = hostileOut('x1');
    const r = await fkz(['export', '--gates', trainOut, '--out', out, '--push', 'me/gates-a', '--json'], hub.url);
    expect(r.code, r.stderr).toBe(0);
    const remote = [...hub.files('me/gates-a')!.keys()].sort();
    expect(remote).toEqual(['.gitattributes', 'README.md', 'qwen3-8b/q2_dim16_sink16.pt']);
    expect(JSON.parse(r.stdout).pushed.files).toEqual(['qwen3-8b/q2_dim16_sink16.pt', 'README.md']);
    expect(r.stderr).toMatch(/uploading 2 file\(s\).*qwen3-8b\/q2_dim16_sink16\.pt, README\.md/);
    // nothing that was not uploaded was even named in a request (preupload sends file heads)
    for (const q of hub.requests) expect(q.url).not.toMatch(/notes|leak|\.env|cache-link/);
    expect(await isPublic('me/gates-a')).toBe(false);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });

  it('--public makes a public repo; --private with --public is a usage error', async () => {
    const r = await fkz(['export', '--gates', trainOut, '--out', path.join(tmp, 'x2'), '--format', 'onnx', '--push', 'me/gates-b', '--public'], hub.url);
    expect(r.code, r.stderr).toBe(0);
    expect([...hub.files('me/gates-b')!.keys()].sort()).toEqual(['.gitattributes', 'README.md', 'qwen3-8b/q2_dim16_sink16.onnx', 'qwen3-8b/q2_dim16_sink16.onnx.data']);
    expect(await isPublic('me/gates-b')).toBe(true);
    const both = await fkz(['export', '--gates', trainOut, '--out', path.join(tmp, 'x3'), '--push', 'me/gates-c', '--public', '--private'], hub.url);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--private and --public/);
  });
});

describe('the token never reaches the terminal', () => {
  let server: http.Server;
  let url = '';
  beforeAll(async () => {
    // a hub that echoes the request's Authorization header in its errors, or answers garbage
    server = http.createServer((req, res) => {
      if (req.url?.startsWith('/api/repos/create') && req.headers['x-test'] !== 'garbage') {
        const body = JSON.stringify({ error: `Bad request: you sent ${req.headers.authorization} and token=${TOKEN}` });
        res.writeHead(400, { 'Content-Type': 'application/json' });
        res.end(body);
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('<html>not json');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('a hub error that echoes "Bearer hf_..." is printed redacted, one line, exit 1', async () => {
    const r = await fkz(['export', '--gates', trainOut, '--out', path.join(tmp, 'x4'), '--push', 'me/gates-d'], url);
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
    expect(r.stdout + r.stderr).not.toMatch(/hf_[A-Za-z0-9]{20,}/);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('fastkvzip:') && !l.includes('uploading'));
    expect(lines.at(-1)).toMatch(/me\/gates-d: Hub request failed with status 400: .*Bearer \[REDACTED\]/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  });

  it('a malformed hub reply is a clear error, not a stack trace', async () => {
    // the model resolve path: `generate --model org/name` against a hub that answers HTML
    const r = await fkz(['generate', '--model', 'org/some-model', '--prompt', 'x'], url);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/org\/some-model: unexpected response from http:\/\/127\.0\.0\.1:\d+/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(r.stdout + r.stderr).not.toContain(TOKEN);
  });
});
