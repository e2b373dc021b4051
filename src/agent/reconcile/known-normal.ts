/**
 * What the API server made of a desired object, remembered per desired hash: the server-normalised
 * projection of the fields Git specifies (from a create response or a server-side dry run). With it
 * an object whose normalisation plan.ts cannot work out itself is checked with a dry run once and
 * never again. Kept in memory and, with a state dir, in one JSON file so restarts keep it.
 */
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../../common/atomic-file.js';

/** Entries beyond this are dropped oldest-first (Map insertion order), bounding memory. */
const MAX_ENTRIES = 50_000;
const FILE_NAME = 'normalized.json';

/** plan.ts `projectFields` output. */
export type Projection = Record<string, unknown>;

export class KnownNormal {
  private map = new Map<string, Projection>();
  private dirty = false;

  private constructor(private readonly file?: string) {}

  /** Loads the persisted entries from `stateDir` when given (a missing or bad file starts empty). */
  static async open(stateDir?: string): Promise<KnownNormal> {
    const store = new KnownNormal(stateDir ? path.join(stateDir, FILE_NAME) : undefined);
    if (store.file) {
      try {
        const data = JSON.parse(await readFile(store.file, 'utf8')) as Record<string, Projection>;
        for (const [k, v] of Object.entries(data)) store.map.set(k, v);
      } catch {
        /* first run or unreadable: start empty, it is only a cache */
      }
    }
    return store;
  }

  get(hash: string): Projection | undefined {
    return this.map.get(hash);
  }

  set(hash: string, projection: Projection): void {
    this.map.delete(hash);
    this.map.set(hash, projection);
    if (this.map.size > MAX_ENTRIES) this.map.delete(this.map.keys().next().value as string);
    this.dirty = true;
  }

  /** Writes the file atomically if anything changed since the last save. */
  async save(): Promise<void> {
    if (!this.file || !this.dirty) return;
    this.dirty = false;
    await mkdir(path.dirname(this.file), { recursive: true });
    // Secret values never go to disk, not even in a 0600 file: Secrets are re-checked after a restart.
    const entries = [...this.map].filter(([, v]) => v.kind !== 'Secret');
    await writeFileAtomic(this.file, JSON.stringify(Object.fromEntries(entries)), { syncDir: false });
  }
}
