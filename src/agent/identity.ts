/**
 * This replica's name in the leader-election Lease, kept in the state dir so a restarted container
 * (same emptyDir) is the same holder and renews its own Lease at once, instead of waiting ~15 s for
 * the Lease of its previous life to expire. Two replicas have two state dirs, hence two names; a
 * rescheduled pod starts with an empty state dir and a new name.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-file.js';

/** File in the state dir holding the identity. */
export const IDENTITY_FILE = 'leader-identity';

/** Lease identities are free text; keep ours to a sane, printable shape. */
const VALID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$/;

export interface IdentityResult {
  identity: string;
  /** `reused`: read from the state dir; `created`: new and saved; `unsaved`: new, the state dir is not writable. */
  source: 'reused' | 'created' | 'unsaved';
  /** Why it could not be saved (unsaved only). */
  error?: string;
}

/**
 * The identity saved in `stateDir`, or a new `<base>_<random>` saved there (atomically, 0600).
 * Never throws: an unreadable or unwritable state dir yields a new identity for this process only.
 */
export async function persistentIdentity(stateDir: string, base: string): Promise<IdentityResult> {
  const file = join(stateDir, IDENTITY_FILE);
  try {
    const saved = (await readFile(file, 'utf8')).trim();
    if (VALID.test(saved)) return { identity: saved, source: 'reused' };
  } catch {
    /* first start, or unreadable: make one */
  }
  const identity = `${base.replace(/[^A-Za-z0-9._:@-]/g, '-').slice(0, 200) || 'gitops-agent'}_${randomBytes(4).toString('hex')}`;
  try {
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(file, `${identity}\n`);
    return { identity, source: 'created' };
  } catch (err) {
    return { identity, source: 'unsaved', error: (err as NodeJS.ErrnoException).code ?? String(err) };
  }
}
