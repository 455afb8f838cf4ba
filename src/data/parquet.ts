// Parquet source: one document per row, read one row group at a time (memory bounded by the
// largest row group's text), only the text column and the token-count column when present.
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import type { FileMetaData } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { fileError } from '../util/errors.js';
import { admitDocument } from './text.js';
import type { Document, DocumentStreamOptions } from './types.js';

export interface ParquetSourceOptions extends DocumentStreamOptions {
  textField: string;
  /** read when the file has this column; ignored otherwise */
  tokenCountField: string;
  /** document ids are `${idBase}#${row}` (0-based row in the file) */
  idBase: string;
  /** how errors name the file (defaults to its path) */
  label?: string;
}

// Hand back raw bytes instead of decoded strings, so invalid UTF-8 is detected (fatal decode)
// rather than silently turned into U+FFFD.
const rawBytesParsers = { stringFromBytes: (bytes: Uint8Array) => bytes as unknown as string };

function topLevelColumns(metadata: FileMetaData): string[] {
  return parquetSchema(metadata).children.map((child) => child.element.name);
}

function toTokenCount(value: unknown, label: string, field: string, row: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) {
    throw fileError(label, `row ${row}: column "${field}" holds ${String(value)}, not a token count`);
  }
  return n;
}

/** Documents of one parquet file, in row order. */
export async function* parquetDocuments(file: string, options: ParquetSourceOptions): AsyncGenerator<Document> {
  const label = options.label ?? file;
  const { textField, tokenCountField } = options;
  let metadata: FileMetaData;
  let buffer: Awaited<ReturnType<typeof asyncBufferFromFile>>;
  try {
    buffer = await asyncBufferFromFile(file);
    metadata = await parquetMetadataAsync(buffer);
  } catch (err) {
    throw fileError(label, `not a readable parquet file (${(err as Error).message})`);
  }
  const columns = topLevelColumns(metadata);
  if (!columns.includes(textField)) {
    throw fileError(label, `no text field "${textField}" (columns: ${columns.join(', ') || 'none'})`);
  }
  const hasTokenCount = tokenCountField !== textField && columns.includes(tokenCountField);
  const wanted = hasTokenCount ? [textField, tokenCountField] : [textField];

  let rowStart = 0;
  for (const [groupIndex, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({
        file: buffer,
        metadata,
        columns: wanted,
        rowStart,
        rowEnd,
        compressors,
        parsers: rawBytesParsers,
      });
    } catch (err) {
      throw fileError(label, `row group ${groupIndex} is unreadable (${(err as Error).message})`);
    }
    for (let i = 0; i < rows.length; i++) {
      const row = rowStart + i;
      const raw = rows[i][textField];
      if (raw !== null && raw !== undefined && typeof raw !== 'string' && !(raw instanceof Uint8Array)) {
        throw fileError(label, `text field "${textField}" is not a string column (row ${row} holds ${typeof raw})`);
      }
      const tokenCount = hasTokenCount ? toTokenCount(rows[i][tokenCountField], label, tokenCountField, row) : undefined;
      const doc = admitDocument(`${options.idBase}#${row}`, raw, tokenCount, options);
      if (doc) yield doc;
    }
    rowStart = rowEnd;
  }
}
