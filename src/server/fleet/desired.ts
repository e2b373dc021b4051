/**
 * The Fleet's desired state: the `desired` message of one manifest project config at the commit
 * of its watch, read once per (commit, globs) and built and encoded once per (commit, globs,
 * resolved config), so agents with the same configuration share one DesiredEntry object. The
 * memos live on the watch (watches.ts) and go when its commit moves on; a failed read is not
 * remembered (the next commit or hello tries again).
 */
import { createHash } from 'node:crypto';
import {
  encodeMessage,
  type DesiredMessage,
  type ManifestFile,
  type ManifestProjectConfig,
} from '../../protocol/messages.js';
import type { ServerMetrics } from '../metrics.js';
import type { DesiredEntry, GitSource } from '../ports.js';
import type { Watch } from './watches.js';

/** sha256 over the files sorted by path and the resolved config: equal digests mean equal desired state. */
export function desiredDigest(files: readonly ManifestFile[], config: ManifestProjectConfig): string {
  const hash = createHash('sha256');
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    hash
      .update(`${Buffer.byteLength(file.path)}:${file.path}\n${Buffer.byteLength(file.content)}:`)
      .update(file.content)
      .update('\n');
  }
  hash.update(JSON.stringify(config));
  return `sha256:${hash.digest('hex')}`;
}

/** Reads a project's files at a commit, timed into the fetch-duration metric. */
export type FileReader = (project: string, commit: string, globs: string[]) => Promise<ManifestFile[]>;

export function timedReader(
  git: Pick<GitSource, 'readFiles'>,
  metrics: Pick<ServerMetrics, 'fetchDuration'>,
): FileReader {
  return async (project, commit, globs) => {
    const stop = metrics.fetchDuration.startTimer();
    try {
      const files = await git.readFiles(project, commit, globs);
      stop({ result: 'ok' });
      return files;
    } catch (err) {
      stop({ result: 'error' });
      throw err;
    }
  };
}

/**
 * The desired entry for `cfg` at the watch's commit (memoised on the watch), or undefined while
 * the watch has no commit yet. Rejects when the files cannot be read.
 */
export function desiredAt(w: Watch, cfg: ManifestProjectConfig, read: FileReader): Promise<DesiredEntry> | undefined {
  const commit = w.commit;
  if (!commit) return undefined;
  const globs = cfg.paths.map((p) => p.glob);
  const globsKey = JSON.stringify(globs);
  const key = `${globsKey}\0${JSON.stringify(cfg)}`;
  const known = w.desired.get(key);
  if (known) return known;
  let files = w.files.get(globsKey);
  if (!files) {
    files = read(w.project, commit, globs);
    w.files.set(globsKey, files);
  }
  const entry = files.then((f): DesiredEntry => {
    const message: DesiredMessage = {
      type: 'desired',
      project: cfg.id,
      commit,
      digest: desiredDigest(f, cfg),
      config: cfg,
      files: f,
    };
    return { project: cfg.id, commit, digest: message.digest, encoded: encodeMessage(message) };
  });
  w.desired.set(key, entry);
  const readFiles = files;
  entry.catch(() => {
    if (w.desired.get(key) === entry) w.desired.delete(key);
    if (w.files.get(globsKey) === readFiles) w.files.delete(globsKey);
  });
  return entry;
}
