import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { mkdtempSync, rmSync, readFileSync, readlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { resolveDatasetFile } from '../../src/hub/resolve-dataset-file.js';
import { parseHubDataRef } from '../../src/hub/parse-hub-data-ref.js';
import { startFakeHub, type FakeHub } from '../helpers/fake-hub.js';

let work: string;
let hub: FakeHub;
const env = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({ HOME: work, HF_HUB_CACHE: path.join(work, 'cache'), HF_ENDPOINT: hub.url, ...extra });

beforeEach(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'fkz-ds-'));
  hub = await startFakeHub();
  vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
});
afterEach(async () => {
  vi.restoreAllMocks();
  await hub.close();
  rmSync(work, { recursive: true, force: true });
});

describe('resolveDatasetFile', () => {
  it('fetches one file of a dataset repo into datasets--org--name, then serves it offline', async () => {
    const parquet = Buffer.from('PAR1 fake parquet bytes PAR1');
    const sha = hub.addRepo('HuggingFaceFW/fineweb-edu', { 'sample/10BT/000_00000.parquet': parquet, 'README.md': '# hi' }, { type: 'dataset' });
    const ref = parseHubDataRef('hub:HuggingFaceFW/fineweb-edu/sample/10BT/000_00000.parquet');
    const r = await resolveDatasetFile(ref.repo, ref.file, { env: env() });
    const folder = path.join(work, 'cache', 'datasets--HuggingFaceFW--fineweb-edu');
    expect(r).toEqual({ path: path.join(folder, 'snapshots', sha, 'sample/10BT/000_00000.parquet'), repoId: 'HuggingFaceFW/fineweb-edu', revision: 'main', commit: sha });
    expect(readFileSync(r.path).equals(parquet)).toBe(true);
    expect(readlinkSync(r.path)).toBe(`../../../../blobs/${createHash('sha256').update(parquet).digest('hex')}`);
    expect(readFileSync(path.join(folder, 'refs', 'main'), 'utf8')).toBe(sha);
    expect(existsSync(path.join(folder, 'snapshots', sha, 'README.md'))).toBe(false); // only what was asked for
    // the dataset endpoints were used, not the model ones
    expect(hub.requests.some((q) => q.url.startsWith('/api/datasets/HuggingFaceFW/fineweb-edu/revision/main'))).toBe(true);
    expect(hub.requests.some((q) => q.url.startsWith('/datasets/HuggingFaceFW/fineweb-edu/resolve/'))).toBe(true);

    await hub.close();
    expect(await resolveDatasetFile(ref.repo, ref.file, { env: env({ HF_HUB_OFFLINE: '1' }) })).toEqual(r);
    await expect(resolveDatasetFile(ref.repo, 'sample/10BT/000_00001.parquet', { env: env({ HF_HUB_OFFLINE: '1' }) })).rejects.toThrow(
      /^dataset HuggingFaceFW\/fineweb-edu: HF_HUB_OFFLINE is set, and the cached snapshot .* lacks sample\/10BT\/000_00001\.parquet$/,
    );
    hub = await startFakeHub();
  });

  it('a missing file or repo is a clear error', async () => {
    hub.addRepo('org/data', { 'a.parquet': 'x' }, { type: 'dataset' });
    await expect(resolveDatasetFile('org/data', 'b.parquet', { env: env() })).rejects.toThrow(/^dataset org\/data: revision "main" has no b\.parquet$/);
    await expect(resolveDatasetFile('org/none', 'a.parquet', { env: env() })).rejects.toThrow(/^dataset org\/none: repository not found/);
    // a model repo of that name is not a dataset
    hub.addRepo('org/model-only', { 'a.parquet': 'x' });
    await expect(resolveDatasetFile('org/model-only', 'a.parquet', { env: env() })).rejects.toThrow(/repository not found/);
  });
});
