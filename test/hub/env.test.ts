import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { inspect } from 'node:util';
import { hubEnv } from '../../src/hub/env.js';
import { parseHubDataRef } from '../../src/hub/parse-hub-data-ref.js';

describe('hubEnv', () => {
  it('defaults like Python huggingface_hub', () => {
    const e = hubEnv({ HOME: '/home/u' });
    expect(e).toEqual({ endpoint: 'https://huggingface.co', offline: false, cacheDir: '/home/u/.cache/huggingface/hub', tokenSource: null });
    expect(e.token).toBeUndefined();
  });

  it('HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, XDG_CACHE_HOME, HF_HUB_OFFLINE', () => {
    expect(hubEnv({ HOME: '/h', HF_ENDPOINT: 'http://127.0.0.1:9/' }).endpoint).toBe('http://127.0.0.1:9');
    expect(hubEnv({ HOME: '/h', HF_HOME: '/hf' }).cacheDir).toBe('/hf/hub');
    expect(hubEnv({ HOME: '/h', XDG_CACHE_HOME: '/x' }).cacheDir).toBe('/x/huggingface/hub');
    expect(hubEnv({ HOME: '/h', HF_HOME: '/hf', HF_HUB_CACHE: '/c' }).cacheDir).toBe('/c');
    for (const v of ['1', 'true', 'TRUE', 'yes', 'on']) expect(hubEnv({ HF_HUB_OFFLINE: v }).offline).toBe(true);
    for (const v of ['0', 'false', '', 'no']) expect(hubEnv({ HF_HUB_OFFLINE: v }).offline).toBe(false);
  });

  it('token from HF_TOKEN, else HF_HOME/token; never enumerable', () => {
    const home = mkdtempSync(path.join(tmpdir(), 'fkz-env-'));
    try {
      writeFileSync(path.join(home, 'token'), 'hf_fromfile\n');
      const fileEnv = hubEnv({ HF_HOME: home });
      expect(fileEnv.token).toBe('hf_fromfile');
      expect(fileEnv.tokenSource).toBe(path.join(home, 'token'));
      const e = hubEnv({ HF_HOME: home, HF_TOKEN: 'hf_secret123' });
      expect(e.token).toBe('hf_secret123');
      expect(e.tokenSource).toBe('HF_TOKEN');
      expect(JSON.stringify(e)).not.toContain('secret');
      expect(inspect(e)).not.toContain('secret');
      expect(JSON.stringify({ ...e })).not.toContain('secret');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe('parseHubDataRef', () => {
  it('splits repo and path', () => {
    expect(parseHubDataRef('hub:HuggingFaceFW/fineweb-edu/sample/10BT/000_00000.parquet')).toEqual({
      repo: 'HuggingFaceFW/fineweb-edu',
      file: 'sample/10BT/000_00000.parquet',
    });
    expect(parseHubDataRef('hub:org/name@v1.0/a.parquet')).toEqual({ repo: 'org/name', file: 'a.parquet', revision: 'v1.0' });
  });
  it('rejects malformed refs with a clear message', () => {
    for (const bad of ['HuggingFaceFW/fineweb-edu/x.parquet', 'hub:org/name', 'hub:org/x.parquet', 'hub:org/name/../x', 'hub:org/name//x']) {
      expect(() => parseHubDataRef(bad), bad).toThrow(/expected hub:org\/name\/path\/in\/repo\.parquet/);
    }
  });
});
