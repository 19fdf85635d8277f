import { DevstreamsError } from '../wire';
import { describeFdExhaustion, isFdExhaustion } from './fd-limit';

/** Errors that mean "this cannot be created or written here" (sysexits 73); the rest are I/O errors (74). */
const CANT_CREATE = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOENT', 'ENOTDIR', 'EISDIR', 'EEXIST']);

const SAYS: Record<string, string> = {
  EROFS: 'read-only file system',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOENT: 'no such file or directory',
  ENOTDIR: 'a path component is not a directory',
  EISDIR: 'is a directory',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
};

/**
 * One line naming the file and the cause, with a stable code for the exit status:
 * `cannot write /var/lib/devstreams/hub.json: read-only file system (EROFS)`.
 */
export function fileError(action: 'read' | 'write' | 'create', path: string, err: unknown): DevstreamsError {
  if (err instanceof DevstreamsError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (isFdExhaustion(err)) return new DevstreamsError('EFILE_IO', `cannot ${action} ${path}: ${describeFdExhaustion(err)}`, { cause: err });
  const cause = SAYS[code] ?? (err as Error).message;
  const code2 = action !== 'read' && CANT_CREATE.has(code) ? 'ECANTCREATE' : 'EFILE_IO';
  return new DevstreamsError(code2, `cannot ${action} ${path}: ${cause}${code ? ` (${code})` : ''}`, { cause: err });
}
