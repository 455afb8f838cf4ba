// Output folders may hold the user's own files: we replace a file only when it is absent, or
// when the folder's ledger says we wrote it and its bytes are still what we wrote (sha256).
// Anything else is refused unless the user passes --overwrite.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, lstatSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic.js';
import { UserError } from './errors.js';

export const LEDGER_NAME = '.fastkvzip-files.json';
const LEDGER_FORMAT = 'fastkvzip-owned-files';

interface LedgerEntry {
  sha256: string;
  /** the command that wrote it, e.g. "export" */
  by: string;
}
interface Ledger {
  format: typeof LEDGER_FORMAT;
  version: 1;
  files: Record<string, LedgerEntry>;
}

function readLedger(dir: string): Ledger {
  const file = path.join(dir, LEDGER_NAME);
  try {
    const l = JSON.parse(readFileSync(file, 'utf8')) as Ledger;
    if (l?.format === LEDGER_FORMAT && l.files && typeof l.files === 'object') return l;
  } catch {
    // absent or unreadable: nothing here is provably ours
  }
  return { format: LEDGER_FORMAT, version: 1, files: {} };
}

export async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 22 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** `dir` must be a folder we can create and write (a regular file or a dangling path is refused). */
export function ensureOutDir(dir: string, flag = '--out'): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new UserError(`${flag} ${dir}: is a file, not a folder`);
  mkdirSync(dir, { recursive: true }); // errno failures (read-only, too long) are worded by main()
}

export interface ClaimOptions {
  overwrite?: boolean;
  /** command name for messages and the ledger */
  by: string;
}

/**
 * Check, before any work, that the files `rels` (relative to `dir`, with `/`) may be written:
 * each is absent, or ours and unchanged. Throws naming the first foreign file otherwise.
 */
export async function claimOutputs(dir: string, rels: string[], o: ClaimOptions): Promise<void> {
  ensureOutDir(dir);
  if (o.overwrite) return;
  const ledger = readLedger(dir);
  for (const rel of rels) {
    const abs = path.join(dir, ...rel.split('/'));
    let st;
    try {
      st = lstatSync(abs);
    } catch {
      continue; // absent
    }
    const entry = ledger.files[rel];
    const ours = entry && st.isFile() && (await sha256Of(abs)) === entry.sha256;
    if (!ours) {
      throw new UserError(
        `${abs}: already exists and was not written by fastkvzip ${o.by}${entry ? ' (it changed since)' : ''}; pass --overwrite to replace it, or choose another --out`,
        1,
      );
    }
  }
}

/** Record `rels` (just written) in the folder's ledger with their checksums. */
export async function recordOutputs(dir: string, rels: string[], by: string): Promise<void> {
  const ledger = readLedger(dir);
  for (const rel of rels) ledger.files[rel] = { sha256: await sha256Of(path.join(dir, ...rel.split('/'))), by };
  await writeFileAtomic(path.join(dir, LEDGER_NAME), JSON.stringify(ledger, null, 2) + '\n');
}
