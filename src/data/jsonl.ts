// JSON Lines source: one JSON object per line, streamed (memory bounded by the longest line).
// Lines are split on raw bytes so a line that is not UTF-8 is detected and counted as a skip
// instead of being decoded with replacement characters. A .json file whose first non-blank
// byte is `[` is read whole as an array of objects.
import { createReadStream, promises as fs } from 'node:fs';
import { fileError } from '../util/errors.js';
import { admitDocument, decodeUtf8Strict } from './text.js';
import type { Document, DocumentStreamOptions } from './types.js';

export interface JsonSourceOptions extends DocumentStreamOptions {
  textField: string;
  /** used when a record has it */
  tokenCountField: string;
  /** document ids are `${idBase}:${line}` (1-based line) or `${idBase}#${index}` for JSON arrays */
  idBase: string;
  label?: string;
}

/** Byte lines of a file without their line terminators (LF or CRLF), with 1-based numbers. */
async function* byteLines(file: string): AsyncGenerator<{ line: number; bytes: Buffer }> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  let pending: Buffer[] = [];
  let line = 0;
  const finish = (parts: Buffer[]): Buffer => {
    const bytes = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    return bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.subarray(0, bytes.length - 1) : bytes;
  };
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a, start); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      pending.push(chunk.subarray(start, nl));
      yield { line: ++line, bytes: finish(pending) };
      pending = [];
      start = nl + 1;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  if (pending.length > 0) yield { line: ++line, bytes: finish(pending) };
}

function recordToDocument(
  record: unknown,
  id: string,
  where: string,
  options: JsonSourceOptions,
): Document | undefined {
  const label = options.label ?? '';
  if (record === null || typeof record !== 'object' || Array.isArray(record)) {
    throw fileError(label, `${where}: expected a JSON object`);
  }
  const fields = record as Record<string, unknown>;
  if (!(options.textField in fields)) {
    throw fileError(label, `${where}: no text field "${options.textField}" (fields: ${Object.keys(fields).join(', ') || 'none'})`);
  }
  const text = fields[options.textField];
  if (text !== null && typeof text !== 'string') {
    throw fileError(label, `${where}: text field "${options.textField}" is ${typeof text}, not a string`);
  }
  const count = fields[options.tokenCountField];
  let tokenCount: number | undefined;
  if (count !== undefined && count !== null) {
    if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
      throw fileError(label, `${where}: "${options.tokenCountField}" is ${JSON.stringify(count)}, not a token count`);
    }
    tokenCount = count;
  }
  return admitDocument(id, text, tokenCount, options);
}

async function firstNonBlankByte(file: string): Promise<number | undefined> {
  const handle = await fs.open(file, 'r');
  try {
    const buf = Buffer.alloc(4096);
    for (let position = 0; ; position += buf.length) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, position);
      if (bytesRead === 0) return undefined;
      for (let i = 0; i < bytesRead; i++) {
        const b = buf[i];
        // skip whitespace and a UTF-8 BOM
        if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d && b !== 0xef && b !== 0xbb && b !== 0xbf) return b;
      }
    }
  } finally {
    await handle.close();
  }
}

async function* jsonArrayDocuments(file: string, options: JsonSourceOptions): AsyncGenerator<Document> {
  const label = options.label ?? file;
  const text = decodeUtf8Strict(await fs.readFile(file));
  if (text === undefined) throw fileError(label, 'not valid UTF-8');
  let records: unknown;
  try {
    records = JSON.parse(text);
  } catch (err) {
    throw fileError(label, `invalid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(records)) throw fileError(label, 'expected a JSON array of objects');
  for (let i = 0; i < records.length; i++) {
    const doc = recordToDocument(records[i], `${options.idBase}#${i}`, `record ${i}`, { ...options, label });
    if (doc) yield doc;
  }
}

async function* jsonLinesDocuments(file: string, options: JsonSourceOptions): AsyncGenerator<Document> {
  const label = options.label ?? file;
  for await (const { line, bytes } of byteLines(file)) {
    const id = `${options.idBase}:${line}`;
    const text = decodeUtf8Strict(bytes);
    if (text === undefined) {
      options.onSkip?.({ id, reason: 'invalid-utf8' });
      continue;
    }
    if (text.trim() === '') continue; // blank lines separate nothing; they are not documents
    let record: unknown;
    try {
      record = JSON.parse(text);
    } catch (err) {
      throw fileError(label, `line ${line}: invalid JSON (${(err as Error).message})`);
    }
    const doc = recordToDocument(record, id, `line ${line}`, { ...options, label });
    if (doc) yield doc;
  }
}

/** Documents of a .jsonl file, or of a .json file (JSON Lines, or one array of objects). */
export async function* jsonDocuments(file: string, options: JsonSourceOptions): AsyncGenerator<Document> {
  let first: number | undefined;
  try {
    first = await firstNonBlankByte(file);
  } catch (err) {
    throw fileError(options.label ?? file, `cannot read (${(err as Error).message})`);
  }
  if (first === 0x5b /* [ */) yield* jsonArrayDocuments(file, options);
  else yield* jsonLinesDocuments(file, options);
}
