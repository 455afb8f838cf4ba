// Plain-text source: one document per file.
import { promises as fs } from 'node:fs';
import { fileError } from '../util/errors.js';
import { admitDocument } from './text.js';
import type { Document, DocumentStreamOptions } from './types.js';

/** Read one .txt file as one document (or a counted skip when it is not UTF-8 or blank). */
export async function readTextDocument(
  file: string,
  id: string,
  options?: DocumentStreamOptions,
): Promise<Document | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw fileError(file, `cannot read (${(err as Error).message})`);
  }
  return admitDocument(id, bytes, undefined, options);
}
