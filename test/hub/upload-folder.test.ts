import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { uploadFolder } from '../../src/hub/upload-folder.js';
import { resolveModel } from '../../src/hub/resolve-model.js';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { writeTinyModel } from '../helpers/tiny-model.js';

const TOKEN = 'hf_upload_secret_77';
let work: string;
let hub: FakeHub;
let printed: string[];
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ HOME: work, HF_HOME: path.join(work, 'hf'), HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, ...extra });

beforeEach(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'fkz-up-'));
  hub = await startFakeHub({ token: TOKEN });
  printed = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((c: any) => (printed.push(String(c)), true));
  vi.spyOn(process.stdout, 'write').mockImplementation((c: any) => (printed.push(`STDOUT ${String(c)}`), true));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

describe('uploadFolder', () => {
  it('creates the repo, uploads regular and LFS files in one commit, and downloads back identical', async () => {
    const src = path.join(work, 'export');
    await writeTinyModel(src, 'qwen3');
    mkdirSync(path.join(src, 'gates'));
    writeFileSync(path.join(src, 'gates', 'manifest.json'), '{"rank": 16}');
    writeFileSync(path.join(src, '.model.safetensors.tmp-1-2'), 'leftover temp file');

    const out = await uploadFolder('me/tiny-gates', src, { env: env(), commitMessage: 'export gates', private: true });
    expect(out.commit).toMatch(/^[0-9a-f]{40}$/);
    expect(out.commit).toBe(hub.head('me/tiny-gates'));
    expect(out.url).toContain(out.commit);

    const remote = hub.files('me/tiny-gates')!;
    expect([...remote.keys()].sort()).toEqual(['.gitattributes', 'config.json', 'gates/manifest.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(remote.get('model.safetensors')!.equals(readFileSync(path.join(src, 'model.safetensors')))).toBe(true);
    expect(remote.get('gates/manifest.json')!.toString()).toBe('{"rank": 16}');
    // the safetensors went through the LFS batch API and a PUT, without the token
    const put = hub.requests.find((r) => r.method === 'PUT');
    expect(put?.url).toMatch(/^\/lfs-upload\/[0-9a-f]{64}$/);
    expect(put?.headers.authorization).toBeUndefined();
    for (const r of hub.requests.filter((q) => q.method !== 'PUT')) expect(r.headers.authorization).toBe(`Bearer ${TOKEN}`);
    expect(printed.join('')).not.toContain(TOKEN);
    expect(printed.some((l) => l.startsWith('STDOUT'))).toBe(false);

    // Round trip: the private repo downloads with the token and matches the folder.
    const back = await resolveModel('me/tiny-gates', { env: env(), files: ['gates/manifest.json'] });
    expect(back.commit).toBe(out.commit);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'gates/manifest.json']) {
      expect(readFileSync(path.join(back.dir, f)).equals(readFileSync(path.join(src, f))), f).toBe(true);
    }

    // Pushing again to the existing repo is fine (409 from create is expected) and makes a new commit.
    writeFileSync(path.join(src, 'gates', 'manifest.json'), '{"rank": 8}');
    const again = await uploadFolder('me/tiny-gates', src, { env: env() });
    expect(again.commit).not.toBe(out.commit);
    expect(hub.files('me/tiny-gates')!.get('gates/manifest.json')!.toString()).toBe('{"rank": 8}');
    expect(hub.requests.filter((r) => r.method === 'PUT').length).toBe(1); // LFS object already there
  });

  it('refuses clearly without a token, offline, or with a bad repo id / empty folder', async () => {
    const src = path.join(work, 'e');
    mkdirSync(src);
    writeFileSync(path.join(src, 'a.json'), '{}');
    await expect(uploadFolder('me/x', src, { env: env({ HF_TOKEN: '' }) })).rejects.toThrow(/^me\/x: pushing needs a Hugging Face token/);
    await expect(uploadFolder('me/x', src, { env: env({ HF_HUB_OFFLINE: '1' }) })).rejects.toThrow(/HF_HUB_OFFLINE/);
    await expect(uploadFolder('x', src, { env: env() })).rejects.toThrow(/^x: not a Hub repo id/);
    const empty = path.join(work, 'empty');
    mkdirSync(empty);
    await expect(uploadFolder('me/x', empty, { env: env() })).rejects.toThrow(/empty: nothing to upload/);
    const e = await uploadFolder('me/x', src, { env: env({ HF_TOKEN: 'hf_wrong' }) }).catch((x) => x);
    expect(e.message).toMatch(/^me\/x: http:\/\/127\.0\.0\.1:\d+ refused to let the token from HF_TOKEN write here \(status 401\)$/);
    expect(e.message).not.toContain('hf_wrong');
    expect(readdirSync(work)).not.toContain('hf');
  });
});
