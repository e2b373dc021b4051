import { describe, expect, it, beforeEach, afterEach } from '@jest/globals';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateStore, type DesiredState } from './state.js';

const config: DesiredState['config'] = {
  id: 'group/gitops-project',
  ref: {},
  defaultNamespace: 'default',
  paths: [{ glob: '/**/*.yaml' }],
  reconcileTimeoutMs: 3_600_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 3_600_000,
  prunePropagationPolicy: 'foreground',
  inventoryPolicy: 'must_match',
};
const desired = (commit: string, content = 'kind: ConfigMap'): DesiredState => ({
  project: 'group/gitops-project',
  commit: commit.repeat(40),
  digest: `sha256:${commit}`,
  config,
  files: [{ path: 'manifest.yaml', content }],
});

describe('StateStore', () => {
  let dir: string;
  beforeEach(async () => {
    dir = join(await mkdtemp(join(tmpdir(), 'agent-state-')), 'state');
  });
  afterEach(async () => {
    await rm(join(dir, '..'), { recursive: true, force: true });
  });

  it('gives back after a restart exactly the desired state and settings it saved', async () => {
    const store = new StateStore(dir);
    await store.init();
    await store.saveDesired(desired('a'));
    await store.saveSettings({
      settings: { drift: { mode: 'detect', ignore: [{ kind: 'Deployment', paths: ['/spec/replicas'] }] } },
      projects: ['group/gitops-project'],
    });
    const loaded = await new StateStore(dir).load();
    expect(loaded.problems).toEqual([]);
    expect(loaded.projects).toEqual([desired('a')]);
    expect(loaded.settings?.settings.drift.mode).toBe('detect');
  });

  it('keeps the newest of several quick saves and leaves no temporary files behind', async () => {
    const store = new StateStore(dir);
    await store.init();
    await Promise.all(['a', 'b', 'c'].map((c) => store.saveDesired(desired(c))));
    const loaded = await store.load();
    expect(loaded.projects.map((p) => p.commit)).toEqual(['c'.repeat(40)]);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('writes files only its own user can read, since desired state may hold Secrets', async () => {
    const store = new StateStore(dir);
    await store.init();
    await store.saveDesired(desired('a', 'kind: Secret'));
    const [name] = await readdir(dir);
    expect((await stat(join(dir, name))).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
  });

  it('skips a damaged file and says which one instead of trusting part of it', async () => {
    const store = new StateStore(dir);
    await store.init();
    await store.saveDesired(desired('a'));
    await writeFile(join(dir, 'settings.json'), '{"version":1,');
    const loaded = await store.load();
    expect(loaded.projects).toHaveLength(1);
    expect(loaded.problems).toEqual([expect.stringContaining('settings.json: unreadable')]);
  });

  it('forgets a removed project and starts empty when the directory does not exist yet', async () => {
    const store = new StateStore(dir);
    expect((await store.load()).projects).toEqual([]);
    await store.init();
    await store.saveDesired(desired('a'));
    await store.removeProject('group/gitops-project');
    expect((await store.load()).projects).toEqual([]);
  });
});
