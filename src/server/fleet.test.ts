import { describe, expect, it } from '@jest/globals';
import { silentLogger } from '../common/logger.js';
import type { ConfigMessage, ErrorMessage, ManifestFile } from '../protocol/messages.js';
import { Fleet, desiredDigest, type Pusher } from './fleet.js';
import type { DesiredEntry } from './hub.js';
import { createServerMetrics } from './metrics.js';
import type { CommitEvent, GitRef, GitSource, SourceErrorEvent, SourceRecoverEvent } from './ports.js';
import type { AgentRecord, RegistryChange } from './registry.js';

const CONFIG = "gitops:\n  manifest_projects:\n  - id: gitops-project\n    paths:\n    - glob: '**/*.yaml'\n";
const C1 = 'a'.repeat(40);
const C2 = 'b'.repeat(40);

/** A GitSource over fixed in-memory commits that counts reads and watches. */
class MemoryGit implements GitSource {
  readonly listeners = new Map<string, Array<(e: CommitEvent) => void>>();
  watches = 0;
  reads = 0;
  files = new Map<string, ManifestFile[]>([[C1, [{ path: 'manifest.yaml', content: 'kind: ConfigMap' }]], [C2, [{ path: 'manifest.yaml', content: 'kind: Secret' }]]]);
  watch(project: string, ref: GitRef, onCommit: (e: CommitEvent) => void, _onError: (e: SourceErrorEvent) => void): () => void {
    this.watches++;
    const list = this.listeners.get(project) ?? [];
    list.push(onCommit);
    this.listeners.set(project, list);
    queueMicrotask(() => onCommit({ project, ref, commit: C1 }));
    return () => { this.watches--; };
  }
  emit(project: string, commit: string): void {
    for (const l of this.listeners.get(project) ?? []) l({ project, ref: {}, commit });
  }
  async refresh(): Promise<void> {}
  async readFiles(_p: string, commit: string): Promise<ManifestFile[]> {
    this.reads++;
    return this.files.get(commit) ?? [];
  }
  async readFile(): Promise<string> {
    return CONFIG;
  }
  async close(): Promise<void> {}
}

async function until(pred: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('Fleet', () => {
  it('serves 10,000 agents of one project with one watch per project and one read per commit', async () => {
    const git = new MemoryGit();
    const agents: AgentRecord[] = Array.from({ length: 10_000 }, (_, i) => ({ id: `id${i}`, name: `agent${i}`, configProject: 'kubernetes-agent', publicKey: 'x', createdAt: '' }));
    const pushed: DesiredEntry[] = [];
    const pusher: Pusher = { pushConfig: (_id: string, _m: ConfigMessage) => undefined, pushError: (_id: string, _m: ErrorMessage) => undefined, pushDesired: (_id, e) => { pushed.push(e); } };
    const fleet = new Fleet({
      git, logger: silentLogger(), metrics: createServerMetrics(),
      registry: { active: () => agents, get: (id) => agents.find((a) => a.id === id), updateStatus: () => undefined, onChange: (_l: (c: RegistryChange) => void) => () => undefined },
    });
    const started = performance.now();
    fleet.start(pusher);
    await until(() => pushed.length === 10_000);
    const firstMs = performance.now() - started;
    expect(git.watches).toBe(2);
    expect(git.reads).toBe(1);
    expect(pushed.length).toBe(10_000);
    expect(new Set(pushed).size).toBe(1);
    const t2 = performance.now();
    git.emit('gitops-project', C2);
    await until(() => pushed.length === 20_000);
    process.stderr.write(`fleet, 10,000 agents: first config+desired ${Math.round(firstMs)} ms, next commit fan-out ${Math.round(performance.now() - t2)} ms\n`);
    expect(git.reads).toBe(2);
    expect(pushed.length).toBe(20_000);
    expect(pushed[19_999].commit).toBe(C2);
    expect((await fleet.desired('id7'))[0]).toBe(pushed[19_999]);
    fleet.close();
  });

  it('reads a config.yaml blob shared by 1,000 agents a few times, and re-reads only the agent whose file changed on a new commit', async () => {
    const C3 = 'c'.repeat(40);
    const agents: AgentRecord[] = Array.from({ length: 1000 }, (_, i) => ({ id: `id${i}`, name: `agent${i}`, configProject: 'kubernetes-agent', publicKey: 'x', createdAt: '' }));
    // agent7's config.yaml changes in C3 (one more manifest project); every other file is the same blob.
    const blobs = (commit: string, path: string): string => (commit === C3 && path.includes('/agent7/') ? 'blob-new' : 'blob-old');
    const git = new (class extends MemoryGit {
      fileReads: string[] = [];
      async fileId(_p: string, commit: string, path: string): Promise<string> {
        return blobs(commit, path);
      }
      override async readFile(_p?: string, commit?: string, path?: string): Promise<string> {
        this.fileReads.push(path ?? '');
        return blobs(commit ?? '', path ?? '') === 'blob-new' ? `${CONFIG}  - id: other-project\n` : CONFIG;
      }
    })();
    const configs: string[] = [];
    const pusher: Pusher = { pushConfig: (id) => { configs.push(id); }, pushError: () => undefined, pushDesired: () => undefined };
    const fleet = new Fleet({
      git, logger: silentLogger(), metrics: createServerMetrics(),
      registry: { active: () => agents, get: (id) => agents.find((a) => a.id === id), updateStatus: () => undefined, onChange: () => () => undefined },
    });
    fleet.start(pusher);
    await until(() => configs.length === 1000);
    // Every agent has the same blob: it is parsed once per read in flight, not once per agent.
    expect(git.fileReads.length).toBeGreaterThan(0);
    expect(git.fileReads.length).toBeLessThanOrEqual(32);
    expect(fleet.configMessage('id999')?.projects).toEqual(['gitops-project']);
    git.fileReads = [];
    configs.length = 0;
    git.emit('kubernetes-agent', C3);
    await until(() => configs.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(git.fileReads).toEqual(['.gitlab/agents/agent7/config.yaml']);
    expect(configs).toEqual(['id7']);
    expect(fleet.configMessage('id7')?.projects).toEqual(['gitops-project', 'other-project']);
    fleet.close();
  });

  it('keeps at most 32 config reads in flight while 2,000 agents with distinct files load', async () => {
    const agents: AgentRecord[] = Array.from({ length: 2000 }, (_, i) => ({ id: `id${i}`, name: `agent${i}`, configProject: 'kubernetes-agent', publicKey: 'x', createdAt: '' }));
    let inFlight = 0;
    let most = 0;
    const git = new (class extends MemoryGit {
      async fileId(_p: string, _c: string, path: string): Promise<string> {
        return `blob-${path}`;
      }
      override async readFile(): Promise<string> {
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setTimeout(r, 1));
        inFlight--;
        return CONFIG;
      }
    })();
    const configs: string[] = [];
    const fleet = new Fleet({
      git, logger: silentLogger(), metrics: createServerMetrics(),
      registry: { active: () => agents, get: (id) => agents.find((a) => a.id === id), updateStatus: () => undefined, onChange: () => () => undefined },
    });
    fleet.start({ pushConfig: (id) => { configs.push(id); }, pushError: () => undefined, pushDesired: () => undefined });
    await until(() => configs.length === 2000);
    expect(most).toBe(32);
    fleet.close();
  });

  it('tells an agent that connects while its config project is unreachable, and stops once it is readable again', async () => {
    const problem = { code: 'GIT_UNREACHABLE', message: 'kubernetes-agent: cannot reach the Git host 127.0.0.1:1 (ECONNREFUSED)' };
    let recover: ((e: SourceRecoverEvent) => void) | undefined;
    // A server started while Git is down: the config project's first fetch fails, no commit is known.
    const git = new (class extends MemoryGit {
      override watch(project: string, ref: GitRef, _onCommit: (e: CommitEvent) => void, onError: (e: SourceErrorEvent) => void, onRecover?: (e: SourceRecoverEvent) => void): () => void {
        recover = onRecover;
        queueMicrotask(() => onError({ project, ref, problem }));
        return () => undefined;
      }
    })();
    const agents: AgentRecord[] = [{ id: 'id0', name: 'agent0', configProject: 'kubernetes-agent', publicKey: 'x', createdAt: '' }];
    const fleet = new Fleet({
      git, logger: silentLogger(), metrics: createServerMetrics(),
      registry: { active: () => agents, get: (id) => agents.find((a) => a.id === id), updateStatus: () => undefined, onChange: () => () => undefined },
    });
    fleet.start({ pushConfig: () => undefined, pushError: () => undefined, pushDesired: () => undefined });
    await until(() => fleet.errorMessages('id0').length > 0);
    expect(fleet.errorMessages('id0')).toEqual([{ type: 'error', project: 'kubernetes-agent', problems: [problem] }]);
    recover!({ project: 'kubernetes-agent', ref: {}, commit: C1, cleared: problem });
    expect(fleet.errorMessages('id0')).toEqual([]);
    fleet.close();
  });

  it('gives equal files and config the same digest whatever their order, and any change a new one', () => {
    const cfg = { id: 'p', ref: {}, defaultNamespace: 'default', paths: [{ glob: '**' }], reconcileTimeoutMs: 1, dryRunStrategy: 'none' as const, prune: true, pruneTimeoutMs: 1, prunePropagationPolicy: 'foreground' as const, inventoryPolicy: 'must_match' as const };
    const a = { path: 'a.yaml', content: 'x' };
    const b = { path: 'b.yaml', content: 'y' };
    expect(desiredDigest([a, b], cfg)).toBe(desiredDigest([b, a], cfg));
    expect(desiredDigest([a, b], cfg)).not.toBe(desiredDigest([a, { ...b, content: 'z' }], cfg));
    expect(desiredDigest([a, b], cfg)).not.toBe(desiredDigest([a, b], { ...cfg, prune: false }));
    expect(desiredDigest([{ path: 'a', content: 'b\nc' }], cfg)).not.toBe(desiredDigest([{ path: 'a\nb', content: 'c' }], cfg));
  });
});
