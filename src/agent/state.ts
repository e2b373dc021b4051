/**
 * The agent's memory across restarts: the last desired state received per manifest project (files,
 * resolved config, commit, digest) and the last agent settings (drift mode and ignore rules), kept
 * in `--state-dir` so a restarted agent with no server keeps enforcing them, drift included, and
 * its `hello` names the commits it already has so the server sends only what is new.
 *
 * Files, not a ConfigMap or Secret: the desired state may hold Secrets (so a ConfigMap is wrong), a
 * cluster Secret caps at 1 MiB and needs extra RBAC, and the API server itself is what we enforce
 * against, so the agent must not depend on it to remember. In a pod the directory is an emptyDir:
 * it survives container restarts and crashes; a rescheduled pod starts empty and waits for the
 * server (the live objects and the inventory ConfigMaps stay as they were meanwhile).
 *
 * Every write is atomic (temporary file, fsync, rename) with mode 0600 in a 0700 directory, and
 * every read is validated: a damaged file is reported and skipped, never half-trusted.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../common/atomic-file.js';
import { AgentSettings, ManifestFile, ManifestProjectConfig } from '../protocol/messages.js';

const STATE_VERSION = 1;

export const DesiredState = z.strictObject({
  project: z.string().min(1),
  commit: z.string().regex(/^[0-9a-f]{40,64}$/),
  digest: z.string(),
  config: ManifestProjectConfig,
  files: z.array(ManifestFile),
});
/** One manifest project's desired state as the server sent it. */
export type DesiredState = z.infer<typeof DesiredState>;

const ProjectFile = z.strictObject({ version: z.literal(STATE_VERSION), savedAt: z.string(), desired: DesiredState });
const SettingsFile = z.strictObject({
  version: z.literal(STATE_VERSION),
  savedAt: z.string(),
  settings: AgentSettings,
  projects: z.array(z.string()),
});

export interface PersistedSettings {
  settings: AgentSettings;
  /** Manifest projects the last config named. */
  projects: string[];
}

export interface LoadedState {
  projects: DesiredState[];
  settings?: PersistedSettings;
  /** Files that could not be read, one sentence each (the file name first). */
  problems: string[];
}

/** Stable, filesystem-safe file name for a project id (ids contain slashes). */
function projectFileName(project: string): string {
  return `project-${createHash('sha256').update(project).digest('hex').slice(0, 24)}.json`;
}

/** The state directory. Writes to one file are serialised so the newest save always wins. */
export class StateStore {
  readonly dir: string;
  private readonly chains = new Map<string, Promise<void>>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** Creates the directory (0700) if needed. */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  async load(): Promise<LoadedState> {
    const out: LoadedState = { projects: [], problems: [] };
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return out;
      throw err;
    }
    for (const name of names.sort()) {
      if (!name.endsWith('.json')) continue;
      const file = join(this.dir, name);
      let raw: unknown;
      try {
        raw = JSON.parse(await readFile(file, 'utf8'));
      } catch (err) {
        out.problems.push(`${file}: unreadable (${(err as Error).message})`);
        continue;
      }
      if (name === 'settings.json') {
        const parsed = SettingsFile.safeParse(raw);
        if (parsed.success) out.settings = { settings: parsed.data.settings, projects: parsed.data.projects };
        else out.problems.push(`${file}: not a settings file of version ${STATE_VERSION}`);
      } else if (name.startsWith('project-')) {
        const parsed = ProjectFile.safeParse(raw);
        if (parsed.success && projectFileName(parsed.data.desired.project) === name)
          out.projects.push(parsed.data.desired);
        else out.problems.push(`${file}: not a desired-state file of version ${STATE_VERSION}`);
      }
    }
    return out;
  }

  /** Remembers a project's desired state (replacing the previous one). */
  saveDesired(desired: DesiredState): Promise<void> {
    const body = JSON.stringify({ version: STATE_VERSION, savedAt: new Date().toISOString(), desired });
    return this.serial(projectFileName(desired.project), (file) => writeFileAtomic(file, body));
  }

  /** Forgets a project the configuration no longer names. */
  removeProject(project: string): Promise<void> {
    return this.serial(projectFileName(project), (file) => rm(file, { force: true }));
  }

  saveSettings(persisted: PersistedSettings): Promise<void> {
    const body = JSON.stringify({ version: STATE_VERSION, savedAt: new Date().toISOString(), ...persisted });
    return this.serial('settings.json', (file) => writeFileAtomic(file, body));
  }

  private serial(name: string, op: (file: string) => Promise<void>): Promise<void> {
    const file = join(this.dir, name);
    const prev = this.chains.get(name) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(() => op(file));
    this.chains.set(name, next);
    void next
      .finally(() => {
        if (this.chains.get(name) === next) this.chains.delete(name);
      })
      .catch(() => undefined);
    return next;
  }
}
