/**
 * Crash-safe file writes shared by the server's registry and the agent's state dir: a reader sees
 * the old content or the new, never a torn file, and the data is on disk when the promise settles.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, promises as fs } from 'node:fs';
import path from 'node:path';

/** fsyncs a directory so a rename into it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface AtomicWriteOptions {
  /** File mode of the new file (default 0600: state files may hold agent data). */
  mode?: number;
  /** fsync the directory after the rename (default true); callers batching many writes sync once. */
  syncDir?: boolean;
}

/** Writes `data` to `file` atomically: unique temp file + fsync + rename (+ directory fsync). */
export async function writeFileAtomic(file: string, data: string, options: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fs.open(
    tmp,
    fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL,
    options.mode ?? 0o600,
  );
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  if (options.syncDir !== false) await syncDir(dir);
}
