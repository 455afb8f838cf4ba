// Failures of the machine rather than of our code (disk full, read-only folder, a path that is
// a file, a name too long) become one line naming the path, exit 1, never "internal error".
import { UserError } from './errors.js';

const REASONS: Record<string, string> = {
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENAMETOOLONG: 'file name too long',
  ENOTDIR: 'a part of this path is a file, not a folder',
  EISDIR: 'is a folder, expected a file',
  EEXIST: 'already exists',
  ENOENT: 'no such file or folder',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  EIO: 'input/output error',
  ELOOP: 'too many levels of symbolic links',
  EXDEV: 'cannot link across file systems',
  EBUSY: 'resource busy',
  ETXTBSY: 'file busy',
  ENOTEMPTY: 'folder not empty',
  EFBIG: 'file too large',
};

/** A UserError for an errno failure of a file-system call, or null when `e` is not one. */
export function systemError(e: unknown): UserError | null {
  const err = e as (NodeJS.ErrnoException & { dest?: string }) | undefined;
  if (!(err instanceof Error) || typeof err.code !== 'string' || !(err.code in REASONS)) return null;
  if (typeof err.syscall !== 'string' && !err.path) return null;
  const where = err.path ? (err.dest ? `${err.path} -> ${err.dest}` : err.path) : err.syscall!;
  return new UserError(`${where}: ${REASONS[err.code]} (${err.code}${err.syscall ? `, ${err.syscall}` : ''})`, 1);
}
