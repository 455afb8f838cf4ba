// Local corpus: one file (.parquet, .jsonl, .json, .txt) or a folder of them, walked
// recursively in code-unit name order so every machine sees the same document order.
import { promises as fs, statSync } from 'node:fs';
import * as path from 'node:path';
import { UserError, fileError } from '../util/errors.js';
import { jsonDocuments } from './jsonl.js';
import { parquetDocuments } from './parquet.js';
import { compareCodeUnits } from './text.js';
import { readTextDocument } from './txt.js';
import type { Corpus, Document, DocumentStreamOptions } from './types.js';

export type FileFormat = 'parquet' | 'jsonl' | 'json' | 'txt';

const FORMAT_BY_EXTENSION: Record<string, FileFormat> = {
  '.parquet': 'parquet',
  '.jsonl': 'jsonl',
  '.json': 'json',
  '.txt': 'txt',
};

export function formatOf(file: string): FileFormat | undefined {
  return FORMAT_BY_EXTENSION[path.extname(file).toLowerCase()];
}

export interface FieldOptions {
  textField: string;
  tokenCountField: string;
}

/**
 * Documents of one file; ids start with `idBase`, errors name `label`. The format comes from
 * the file's extension unless given (a downloaded blob may have none).
 */
export async function* fileDocuments(
  file: string,
  idBase: string,
  fields: FieldOptions,
  options: DocumentStreamOptions = {},
  label = file,
  format: FileFormat | undefined = formatOf(file),
): AsyncGenerator<Document> {
  switch (format) {
    case 'parquet':
      yield* parquetDocuments(file, { ...fields, ...options, idBase, label });
      return;
    case 'jsonl':
    case 'json':
      yield* jsonDocuments(file, { ...fields, ...options, idBase, label });
      return;
    case 'txt': {
      const doc = await readTextDocument(file, idBase, options);
      if (doc) yield doc;
      return;
    }
    default:
      throw fileError(label, `unsupported file type (expected ${Object.keys(FORMAT_BY_EXTENSION).join(', ')})`);
  }
}

/**
 * Supported files under a folder, as paths relative to it with `/` separators, sorted by
 * name level by level (a folder's files and subfolders interleave by name). Hidden entries
 * (names starting with ".") and other file types are left out.
 */
export async function listCorpusFiles(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (relative: string): Promise<void> => {
    const dir = path.join(root, relative);
    const entries = (await fs.readdir(dir, { withFileTypes: true }))
      .filter((entry) => !entry.name.startsWith('.'))
      .sort((a, b) => compareCodeUnits(a.name, b.name));
    for (const entry of entries) {
      const rel = relative ? `${relative}/${entry.name}` : entry.name;
      let isDir = entry.isDirectory();
      let isFile = entry.isFile();
      if (entry.isSymbolicLink()) {
        const target = await fs.stat(path.join(root, rel));
        isDir = target.isDirectory();
        isFile = target.isFile();
      }
      if (isDir) await walk(rel);
      else if (isFile && formatOf(entry.name)) out.push(rel);
    }
  };
  await walk('');
  return out;
}

async function* folderDocuments(root: string, fields: FieldOptions, options: DocumentStreamOptions): AsyncGenerator<Document> {
  const files = await listCorpusFiles(root);
  if (files.length === 0) {
    throw fileError(root, `no corpus files in this folder (${Object.keys(FORMAT_BY_EXTENSION).join(', ')})`);
  }
  for (const rel of files) {
    yield* fileDocuments(path.join(root, ...rel.split('/')), rel, fields, options);
  }
}

/** A local file or folder corpus. Checks at once that the path exists and has a known type. */
export function localCorpus(target: string, fields: FieldOptions, spec = target): Corpus {
  let isDir: boolean;
  try {
    isDir = statSync(target).isDirectory();
  } catch {
    throw new UserError(`${target}: no such file or folder (--data takes sotu, hub:org/name/path/to/file, or a local file or folder)`);
  }
  if (!isDir && !formatOf(target)) {
    throw fileError(target, `unsupported file type (expected ${Object.keys(FORMAT_BY_EXTENSION).join(', ')})`);
  }
  return {
    description: { kind: 'local', spec, ...fields },
    documents: (options = {}) =>
      isDir ? folderDocuments(target, fields, options) : fileDocuments(target, path.basename(target), fields, options),
  };
}
