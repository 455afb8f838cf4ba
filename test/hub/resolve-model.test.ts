import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, readdirSync, readlinkSync, lstatSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { resolveModel } from '../../src/hub/resolve-model.js';
import { openModel } from '../../src/model/load.js';
import { UserError } from '../../src/util/errors.js';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';
import { writeTinyModel } from '../helpers/tiny-model.js';

const TOKEN = 'hf_test_secret_token_42';
const REPO = 'fake-org/tiny-qwen3';

let work: string;
let hub: FakeHub;
let stdoutWrites: string[];
let stderrWrites: string[];

/** The model files as a repo would hold them (plus an optional extra file). */
async function modelFiles(family: 'qwen3' | 'llama', shards = 1): Promise<Record<string, Buffer>> {
  const dir = path.join(work, `src-${family}-${shards}`);
  await writeTinyModel(dir, family, { shards });
  writeFileSync(path.join(dir, 'generation_config.json'), '{"do_sample": false}');
  const out: Record<string, Buffer> = {};
  for (const f of readdirSync(dir)) out[f] = readFileSync(path.join(dir, f));
  return out;
}

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { HOME: work, HF_HOME: path.join(work, 'hf'), HF_ENDPOINT: hub.url, HF_TOKEN: TOKEN, ...extra };
}

beforeEach(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'fkz-hub-'));
  hub = await startFakeHub({ token: TOKEN });
  stdoutWrites = [];
  stderrWrites = [];
  // Everything a download prints must go to stderr; stdout is for the command's output.
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: any) => (stdoutWrites.push(String(chunk)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: any) => (stderrWrites.push(String(chunk)), true));
  for (const m of ['log', 'debug', 'info'] as const) vi.spyOn(console, m).mockImplementation((...a: unknown[]) => void stdoutWrites.push(a.join(' ')));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

describe('resolveModel from the Hub', () => {
  it('downloads into Python huggingface_hub’s cache layout, then works offline', async () => {
    const files = await modelFiles('qwen3');
    const sha = hub.addRepo(REPO, files);
    const r = await resolveModel(REPO, { env: env() });

    const repoFolder = path.join(work, 'hf', 'hub', 'models--fake-org--tiny-qwen3');
    expect(r).toEqual({ dir: path.join(repoFolder, 'snapshots', sha), repoId: REPO, revision: 'main', commit: sha });
    expect(readFileSync(path.join(repoFolder, 'refs', 'main'), 'utf8')).toBe(sha); // no newline, as Python writes it

    // snapshots/<sha>/<file> are relative symlinks to blobs/<etag>: sha256 for LFS files, git blob sha1 otherwise.
    const snap = readdirSync(r.dir).sort();
    expect(snap).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    for (const f of snap) {
      expect(lstatSync(path.join(r.dir, f)).isSymbolicLink()).toBe(true);
      const content = files[f]!;
      const etag = f.endsWith('.safetensors')
        ? createHash('sha256').update(content).digest('hex')
        : createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
      expect(readlinkSync(path.join(r.dir, f))).toBe(`../../blobs/${etag}`);
      expect(readFileSync(path.join(r.dir, f)).equals(content)).toBe(true);
    }
    expect(readdirSync(path.join(repoFolder, 'blobs')).length).toBe(5);
    expect(readdirSync(path.join(repoFolder, 'blobs')).some((b) => b.endsWith('.incomplete'))).toBe(false);

    // The folder opens as a model.
    expect(openModel(r.dir).spec.family).toBe('qwen3');

    // Progress went to stderr, one line per file; nothing at all on stdout.
    expect(stdoutWrites).toEqual([]);
    expect(stderrWrites.filter((l) => l.includes('downloading')).length).toBe(5);
    expect(stderrWrites.join('')).toContain(`downloading ${REPO} model.safetensors`);

    // A second online run downloads nothing.
    const before = hub.requests.length;
    expect((await resolveModel(REPO, { env: env() })).dir).toBe(r.dir);
    expect(hub.requests.slice(before).map((q) => q.url.split('?')[0])).toEqual([`/api/models/${REPO}/revision/main`]);

    // Offline with the server gone: same folder, straight from refs/main.
    await hub.close();
    const off = await resolveModel(REPO, { env: env({ HF_HUB_OFFLINE: '1' }) });
    expect(off).toEqual(r);
    // Network down (server stopped) without HF_HUB_OFFLINE: falls back to the cache with a warning.
    const down = await resolveModel(REPO, { env: env() });
    expect(down.dir).toBe(r.dir);
    expect(stderrWrites.join('')).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+ \([A-Z_]+\); using the cached fake-org\/tiny-qwen3@main/);
    hub = await startFakeHub(); // for afterEach
  });

  it('sends the token as a Bearer header to the Hub only, and never prints it', async () => {
    hub.addRepo(REPO, await modelFiles('qwen3'));
    await resolveModel(REPO, { env: env() });
    const hubReqs = hub.requests.filter((r) => r.server === 'hub');
    const cdnReqs = hub.requests.filter((r) => r.server === 'cdn');
    expect(hubReqs.length).toBeGreaterThan(0);
    expect(cdnReqs.length).toBeGreaterThan(0); // the safetensors file came through the CDN redirect
    for (const r of hubReqs) expect(r.headers.authorization, r.url).toBe(`Bearer ${TOKEN}`);
    for (const r of cdnReqs) expect(r.headers.authorization, `token leaked to the CDN: ${r.url}`).toBeUndefined();
    for (const r of hub.requests) {
      expect(r.url).not.toContain(TOKEN);
      for (const [k, v] of Object.entries(r.headers)) if (k !== 'authorization') expect(v).not.toContain(TOKEN);
    }
    expect(stdoutWrites.join('') + stderrWrites.join('')).not.toContain(TOKEN);
    // The cache holds no trace of it either.
    const cacheText = readdirSync(path.join(work, 'hf', 'hub'), { recursive: true }).join('\n');
    expect(cacheText).not.toContain(TOKEN);
  });

  it('private repo: works with the token, clear error without it (token never in the message)', async () => {
    hub.addRepo(REPO, await modelFiles('qwen3'), { private: true });
    await expect(resolveModel(REPO, { env: env({ HF_TOKEN: '' }) })).rejects.toThrow(
      new RegExp(`^${REPO}: repository not found on http://127\\.0\\.0\\.1:\\d+ \\(set HF_TOKEN if it is private or gated\\)$`),
    );
    const err = await resolveModel(REPO, { env: env({ HF_TOKEN: 'hf_wrong_token' }) }).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain('the token from HF_TOKEN may lack access');
    expect(err.message).not.toContain('hf_wrong_token');
    expect((await resolveModel(REPO, { env: env() })).commit).toBe(hub.head(REPO));
  });

  it('missing repo, missing revision, bad ids: clear one-line errors', async () => {
    const e1 = await resolveModel('fake-org/nope', { env: env() }).catch((e) => e);
    expect(e1).toBeInstanceOf(UserError);
    expect(e1.message).toMatch(/^fake-org\/nope: repository not found on http:\/\/127\.0\.0\.1:\d+/);
    hub.addRepo(REPO, await modelFiles('qwen3'));
    await expect(resolveModel(REPO, { env: env(), revision: 'v9' })).rejects.toThrow(/fake-org\/tiny-qwen3: not found on .*Invalid rev id: v9/);
    await expect(resolveModel('not a repo id', { env: env() })).rejects.toThrow(/not a repo id: no such folder, and not a Hub repo id/);
    await expect(resolveModel('./missing/folder', { env: env() })).rejects.toThrow(/no such folder/);
    expect(existsSync(path.join(work, 'hf', 'hub', 'models--fake-org--nope'))).toBe(false);
  });

  it('offline and not cached: names the repo and what is missing', async () => {
    await expect(resolveModel(REPO, { env: env({ HF_HUB_OFFLINE: '1' }) })).rejects.toThrow(
      /^fake-org\/tiny-qwen3: HF_HUB_OFFLINE is set, and revision "main" is not in the cache \(.*models--fake-org--tiny-qwen3\)$/,
    );
    // A partial cache (weights deleted): says which files are missing.
    hub.addRepo(REPO, await modelFiles('qwen3'));
    const r = await resolveModel(REPO, { env: env() });
    rmSync(path.join(r.dir, 'model.safetensors'));
    await expect(resolveModel(REPO, { env: env({ HF_HUB_OFFLINE: 'true' }) })).rejects.toThrow(
      /HF_HUB_OFFLINE is set, and the cached snapshot .* lacks model\.safetensors \(or model\.safetensors\.index\.json\)/,
    );
    // Online again it fetches just what is missing (the blob is still there, so only the link is remade).
    expect((await resolveModel(REPO, { env: env() })).dir).toBe(r.dir);
    expect(existsSync(path.join(r.dir, 'model.safetensors'))).toBe(true);
  });

  it('sharded weights: the index and every shard it lists; a missing shard is named', async () => {
    const files = await modelFiles('llama', 3);
    hub.addRepo('fake-org/tiny-llama', files);
    const r = await resolveModel('fake-org/tiny-llama', { env: env() });
    expect(readdirSync(r.dir).filter((f) => f.endsWith('.safetensors')).length).toBe(3);
    expect(openModel(r.dir).weights.files.length).toBe(3);

    const broken = { ...files };
    delete broken['model-00002-of-00003.safetensors'];
    hub.addRepo('fake-org/broken', broken);
    await expect(resolveModel('fake-org/broken', { env: env() })).rejects.toThrow(
      /^fake-org\/broken: model\.safetensors\.index\.json lists model-00002-of-00003\.safetensors, which revision "main" does not have$/,
    );
  });

  it('required files and weights; optional ones may be absent; weights: false skips them', async () => {
    const files = await modelFiles('qwen3');
    const { ['generation_config.json']: _g, ['tokenizer_config.json']: _t, ...lean } = files;
    hub.addRepo('fake-org/lean', lean);
    const r = await resolveModel('fake-org/lean', { env: env() });
    expect(readdirSync(r.dir).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json']);

    const { ['model.safetensors']: _w, ...noWeights } = files;
    hub.addRepo('fake-org/noweights', noWeights);
    await expect(resolveModel('fake-org/noweights', { env: env() })).rejects.toThrow(/fake-org\/noweights: revision "main" has no safetensors weights/);
    const tok = await resolveModel('fake-org/noweights', { env: env(), weights: false });
    expect(existsSync(path.join(tok.dir, 'tokenizer.json'))).toBe(true);

    await expect(resolveModel('fake-org/lean', { env: env(), files: ['chat_template.jinja'] })).rejects.toThrow(/fake-org\/lean: revision "main" has no chat_template\.jinja/);
  });

  it('a pinned commit sha is used as is (no refs file) and served from the cache offline', async () => {
    const sha = hub.addRepo(REPO, await modelFiles('qwen3'));
    const r = await resolveModel(REPO, { env: env(), revision: sha });
    expect(r.commit).toBe(sha);
    expect(existsSync(path.join(work, 'hf', 'hub', 'models--fake-org--tiny-qwen3', 'refs'))).toBe(false);
    expect((await resolveModel(REPO, { env: env({ HF_HUB_OFFLINE: '1' }), revision: sha })).dir).toBe(r.dir);
  });

  it('a local folder is used as is', async () => {
    const dir = path.join(work, 'local');
    await writeTinyModel(dir, 'qwen3');
    expect(await resolveModel(dir, { env: env() })).toEqual({ dir, repoId: null, revision: null, commit: null });
    expect(hub.requests).toEqual([]);
    await expect(resolveModel(path.join(dir, 'config.json'), { env: env() })).rejects.toThrow(/config\.json: not a folder/);
  });

  it('a token that is not an hf_ token is refused without being shown', async () => {
    hub.addRepo(REPO, await modelFiles('qwen3'));
    const e = await resolveModel(REPO, { env: env({ HF_TOKEN: 'ghp_notahftoken' }) }).catch((x) => x);
    expect(e.message).toBe('HF_TOKEN: the Hugging Face token must start with "hf_"');
  });
});
