import { writeFileSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { parquetWriteFile } from 'hyparquet-writer';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCorpus } from '../../src/data/corpus.js';
import { UserError } from '../../src/util/errors.js';
import { drain, tempDir } from './helpers.js';

let dir: string;
let cleanup: () => void;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => cleanup());

const texts = ['alpha beta', 'gamma', 'delta epsilon zeta', 'eta', 'theta iota'];

async function writeFixture(file: string, extra: { withCounts?: boolean; rowGroupSize?: number } = {}) {
  const columnData: { name: string; data: unknown[]; type: string }[] = [
    { name: 'id', data: texts.map((_, i) => `urn:${i}`), type: 'STRING' },
    { name: 'text', data: texts, type: 'STRING' },
  ];
  if (extra.withCounts ?? true) {
    columnData.push({ name: 'token_count', data: texts.map((t) => BigInt(t.split(' ').length * 10)), type: 'INT64' });
  }
  await parquetWriteFile({ filename: file, columnData: columnData as never, rowGroupSize: extra.rowGroupSize ?? 2 });
}

describe('parquet source', () => {
  it('round-trips text and token_count across several row groups, in row order', async () => {
    const file = path.join(dir, 'shard.parquet');
    await writeFixture(file);
    const { docs, skips } = await drain(openCorpus(file));
    expect(skips).toEqual([]);
    expect(docs).toEqual(texts.map((text, i) => ({ id: `shard.parquet#${i}`, text, tokenCount: text.split(' ').length * 10 })));
  });

  it('works without a token_count column (counts left to the tokenizer)', async () => {
    const file = path.join(dir, 'plain.parquet');
    await writeFixture(file, { withCounts: false });
    const { docs } = await drain(openCorpus(file));
    expect(docs.map((d) => d.tokenCount)).toEqual(texts.map(() => undefined));
  });

  it('reads another text field when asked', async () => {
    const file = path.join(dir, 'ids.parquet');
    await writeFixture(file);
    const { docs } = await drain(openCorpus(file, { textField: 'id' }));
    expect(docs[4]).toEqual({ id: 'ids.parquet#4', text: 'urn:4', tokenCount: 20 });
  });

  it('counts empty, null and non-UTF-8 rows as skips with their row ids', async () => {
    const file = path.join(dir, 'dirty.parquet');
    await parquetWriteFile({
      filename: file,
      rowGroupSize: 3,
      columnData: [
        {
          name: 'text',
          data: ['good one', '   \n', null, new Uint8Array([0x61, 0xff, 0x62]), 'good two'],
          type: 'STRING',
        },
        { name: 'token_count', data: [2n, 0n, null, 1n, 2n], type: 'INT64' },
      ] as never,
    });
    const { docs, skips } = await drain(openCorpus(file));
    expect(docs).toEqual([
      { id: 'dirty.parquet#0', text: 'good one', tokenCount: 2 },
      { id: 'dirty.parquet#4', text: 'good two', tokenCount: 2 },
    ]);
    expect(skips).toEqual([
      { id: 'dirty.parquet#1', reason: 'empty' },
      { id: 'dirty.parquet#2', reason: 'null-text' },
      { id: 'dirty.parquet#3', reason: 'invalid-utf8' },
    ]);
  });

  it('names the file and the field when the text column is missing', async () => {
    const file = path.join(dir, 'nofield.parquet');
    await writeFixture(file);
    const err = await drain(openCorpus(file, { textField: 'content' })).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toContain(file);
    expect(err.message).toContain('"content"');
    expect(err.message).toContain('columns: id, text, token_count');
  });

  it('names the file when it is not parquet at all', async () => {
    const file = path.join(dir, 'garbage.parquet');
    writeFileSync(file, 'this is not a parquet file, just some bytes that go on for a while');
    const err = await drain(openCorpus(file)).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/garbage\.parquet: not a readable parquet file/);
  });

  it('names the file when its data pages are corrupt', async () => {
    const file = path.join(dir, 'corrupt.parquet');
    await writeFixture(file, { rowGroupSize: 5 });
    const bytes = readFileSync(file);
    // Overwrite the middle of the data (after the 4-byte magic, before the footer) with junk.
    const footerLength = bytes.readUInt32LE(bytes.length - 8);
    for (let i = 4; i < bytes.length - 8 - footerLength; i++) bytes[i] = 0xff;
    writeFileSync(file, bytes);
    const err = await drain(openCorpus(file)).catch((e) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(err.message).toMatch(/corrupt\.parquet: row group 0 is unreadable/);
  });

  it('resolves hub parquet files through the injected resolver', async () => {
    const file = path.join(dir, 'blob');
    await writeFixture(file);
    const corpus = openCorpus('hub:HuggingFaceFW/fineweb-edu/sample/10BT/000_00000.parquet', {
      resolveHubFile: async () => file,
    });
    const { docs } = await drain(corpus);
    expect(docs[0].id).toBe('HuggingFaceFW/fineweb-edu/sample/10BT/000_00000.parquet#0');
    expect(docs).toHaveLength(5);
  });
});
