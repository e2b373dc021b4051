import { describe, expect, it } from '@jest/globals';
import { UserError } from '../../common/errors.js';
import { silentLogger, type Logger } from '../../common/logger.js';
import type { ConfigMessage, ErrorMessage, ManifestFile } from '../../protocol/messages.js';
import { createServerMetrics } from '../metrics.js';
import type {
  CommitEvent,
  DesiredEntry,
  GitRef,
  GitSource,
  Pusher,
  SourceErrorEvent,
  SourceRecoverEvent,
} from '../ports.js';
import { checkProjectId } from '../project-id.js';
import type { AgentRecord, RegistryChange } from '../registry.js';
import { FLEET_TASK_FAILED, Fleet, type FleetRegistry } from './index.js';

const CONFIG = "gitops:\n  manifest_projects:\n  - id: gitops-project\n    paths:\n    - glob: '**/*.yaml'\n";
const C1 = 'a'.repeat(40);
const C2 = 'b'.repeat(40);

/** A GitSource over fixed in-memory commits that counts reads and watches. */
class MemoryGit implements GitSource {
  readonly listeners = new Map<string, Array<(e: CommitEvent) => void>>();
  watches = 0;
  reads = 0;
  files = new Map<string, ManifestFile[]>([
    [C1, [{ path: 'manifest.yaml', content: 'kind: ConfigMap' }]],
    [C2, [{ path: 'manifest.yaml', content: 'kind: Secret' }]],
  ]);
  watch(
    project: string,
    ref: GitRef,
    onCommit: (e: CommitEvent) => void,
    _onError: (e: SourceErrorEvent) => void,
  ): () => void {
    this.watches++;
    const list = this.listeners.get(project) ?? [];
    list.push(onCommit);
    this.listeners.set(project, list);
    queueMicrotask(() => onCommit({ project, ref, commit: C1 }));
    return () => {
      this.watches--;
    };
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

/** The registry's status writes, ignored (tests that look at the status use fakeRegistry). */
const noStatusWrites: Pick<
  FleetRegistry,
  'setConfigProblems' | 'clearConfigProblems' | 'setSourceProblem' | 'clearSourceProblem'
> = {
  setConfigProblems: () => undefined,
  clearConfigProblems: () => undefined,
  setSourceProblem: () => undefined,
  clearSourceProblem: () => false,
};

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
    const agents: AgentRecord[] = Array.from({ length: 10_000 }, (_, i) => ({
      id: `id${i}`,
      name: `agent${i}`,
      configProject: 'kubernetes-agent',
      publicKey: 'x',
      createdAt: '',
    }));
    const pushed: DesiredEntry[] = [];
    const pusher: Pusher = {
      pushConfig: (_id: string, _m: ConfigMessage) => undefined,
      pushError: (_id: string, _m: ErrorMessage) => undefined,
      pushDesired: (_id, e) => {
        pushed.push(e);
      },
    };
    const fleet = new Fleet({
      git,
      logger: silentLogger(),
      metrics: createServerMetrics(),
      registry: {
        active: () => agents,
        get: (id) => agents.find((a) => a.id === id),
        ...noStatusWrites,
        onChange: (_l: (c: RegistryChange) => void) => () => undefined,
      },
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
    process.stderr.write(
      `fleet, 10,000 agents: first config+desired ${Math.round(firstMs)} ms, next commit fan-out ${Math.round(performance.now() - t2)} ms\n`,
    );
    expect(git.reads).toBe(2);
    expect(pushed.length).toBe(20_000);
    expect(pushed[19_999].commit).toBe(C2);
    expect((await fleet.desired('id7'))[0]).toBe(pushed[19_999]);
    fleet.close();
  });

  it('reads a config.yaml blob shared by 1,000 agents a few times, and re-reads only the agent whose file changed on a new commit', async () => {
    const C3 = 'c'.repeat(40);
    const agents: AgentRecord[] = Array.from({ length: 1000 }, (_, i) => ({
      id: `id${i}`,
      name: `agent${i}`,
      configProject: 'kubernetes-agent',
      publicKey: 'x',
      createdAt: '',
    }));
    // agent7's config.yaml changes in C3 (one more manifest project); every other file is the same blob.
    const blobs = (commit: string, path: string): string =>
      commit === C3 && path.includes('/agent7/') ? 'blob-new' : 'blob-old';
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
    const pusher: Pusher = {
      pushConfig: (id) => {
        configs.push(id);
      },
      pushError: () => undefined,
      pushDesired: () => undefined,
    };
    const fleet = new Fleet({
      git,
      logger: silentLogger(),
      metrics: createServerMetrics(),
      registry: {
        active: () => agents,
        get: (id) => agents.find((a) => a.id === id),
        ...noStatusWrites,
        onChange: () => () => undefined,
      },
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
    const agents: AgentRecord[] = Array.from({ length: 2000 }, (_, i) => ({
      id: `id${i}`,
      name: `agent${i}`,
      configProject: 'kubernetes-agent',
      publicKey: 'x',
      createdAt: '',
    }));
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
      git,
      logger: silentLogger(),
      metrics: createServerMetrics(),
      registry: {
        active: () => agents,
        get: (id) => agents.find((a) => a.id === id),
        ...noStatusWrites,
        onChange: () => () => undefined,
      },
    });
    fleet.start({
      pushConfig: (id) => {
        configs.push(id);
      },
      pushError: () => undefined,
      pushDesired: () => undefined,
    });
    await until(() => configs.length === 2000);
    expect(most).toBe(32);
    fleet.close();
  });

  it('tells an agent that connects while its config project is unreachable, and stops once it is readable again', async () => {
    const problem = {
      code: 'GIT_UNREACHABLE',
      message: 'kubernetes-agent: cannot reach the Git host 127.0.0.1:1 (ECONNREFUSED)',
    };
    let recover: ((e: SourceRecoverEvent) => void) | undefined;
    // A server started while Git is down: the config project's first fetch fails, no commit is known.
    const git = new (class extends MemoryGit {
      override watch(
        project: string,
        ref: GitRef,
        _onCommit: (e: CommitEvent) => void,
        onError: (e: SourceErrorEvent) => void,
        onRecover?: (e: SourceRecoverEvent) => void,
      ): () => void {
        recover = onRecover;
        queueMicrotask(() => onError({ project, ref, problem }));
        return () => undefined;
      }
    })();
    const agents: AgentRecord[] = [
      { id: 'id0', name: 'agent0', configProject: 'kubernetes-agent', publicKey: 'x', createdAt: '' },
    ];
    const fleet = new Fleet({
      git,
      logger: silentLogger(),
      metrics: createServerMetrics(),
      registry: {
        active: () => agents,
        get: (id) => agents.find((a) => a.id === id),
        ...noStatusWrites,
        onChange: () => () => undefined,
      },
    });
    fleet.start({ pushConfig: () => undefined, pushError: () => undefined, pushDesired: () => undefined });
    await until(() => fleet.errorMessages('id0').length > 0);
    expect(fleet.errorMessages('id0')).toEqual([{ type: 'error', project: 'kubernetes-agent', problems: [problem] }]);
    recover!({ project: 'kubernetes-agent', ref: {}, commit: C1, cleared: problem });
    expect(fleet.errorMessages('id0')).toEqual([]);
    fleet.close();
  });
});

/** A GitSource with one config.yaml per agent, that refuses bad project ids as the real one does. */
class TenantGit extends MemoryGit {
  readonly watched: string[] = [];
  readonly read: string[] = [];
  constructor(readonly configs: Record<string, string>) {
    super();
  }
  override watch(
    project: string,
    ref: GitRef,
    onCommit: (e: CommitEvent) => void,
    onError: (e: SourceErrorEvent) => void,
  ): () => void {
    checkProjectId(project);
    this.watched.push(project);
    return super.watch(project, ref, onCommit, onError);
  }
  override async readFiles(project: string, commit: string): Promise<ManifestFile[]> {
    this.read.push(project);
    return super.readFiles(project, commit);
  }
  override async readFile(_p?: string, _c?: string, path?: string): Promise<string> {
    const name = /agents\/([^/]+)\//.exec(path ?? '')?.[1] ?? '';
    return this.configs[name] ?? '';
  }
}

/** A registry with records that can change, as Registry.onChange reports it, and the status it was given. */
function fakeRegistry(records: AgentRecord[]) {
  const status = new Map<string, { configProblems?: ProblemLike[]; sourceProblems?: Record<string, ProblemLike> }>();
  const of = (id: string) => status.get(id) ?? (status.set(id, {}), status.get(id)!);
  let listener: ((c: RegistryChange) => void) | undefined;
  return {
    status,
    active: () => records.filter((r) => !r.revokedAt),
    get: (id: string) => records.find((a) => a.id === id),
    setConfigProblems: (id: string, problems: readonly ProblemLike[]) => {
      of(id).configProblems = [...problems];
    },
    clearConfigProblems: (id: string) => {
      if (status.get(id)?.configProblems) delete of(id).configProblems;
    },
    setSourceProblem: (id: string, project: string, problem: ProblemLike) => {
      of(id).sourceProblems = { ...of(id).sourceProblems, [project]: problem };
    },
    clearSourceProblem: (id: string, project: string) => {
      const s = status.get(id);
      if (!s?.sourceProblems?.[project]) return false;
      delete s.sourceProblems[project];
      return true;
    },
    onChange: (l: (c: RegistryChange) => void) => {
      listener = l;
      return () => {
        listener = undefined;
      };
    },
    replace(record: AgentRecord) {
      records.splice(
        records.findIndex((r) => r.id === record.id),
        1,
        record,
      );
      listener?.({ added: [], revoked: [], changed: [record] });
    },
  };
}
type ProblemLike = { code: string; message: string; line?: number };

function recordingPusher() {
  const errors: [string, ErrorMessage][] = [];
  const configs: [string, ConfigMessage][] = [];
  const desired: [string, DesiredEntry][] = [];
  const pusher: Pusher = {
    pushConfig: (id, m) => {
      configs.push([id, m]);
    },
    pushError: (id, m) => {
      errors.push([id, m]);
    },
    pushDesired: (id, e) => {
      desired.push([id, e]);
    },
  };
  return { pusher, errors, configs, desired };
}

const record = (name: string, extra: Partial<AgentRecord> = {}): AgentRecord => ({
  id: `id-${name}`,
  name,
  configProject: 'kubernetes-agent',
  publicKey: 'x',
  createdAt: '',
  ...extra,
});

describe('Fleet: a tenant input fails only its agent', () => {
  it.each([['../../etc'], ['http://169.254.169.254/latest'], ['a'.repeat(10_000)]])(
    'a manifest project id %s is a config problem with file:line for that agent, never a watch',
    async (id) => {
      const git = new TenantGit({ bad: `gitops:\n  manifest_projects:\n  - id: '${id}'\n`, good: CONFIG });
      const registry = fakeRegistry([record('bad'), record('good')]);
      const { pusher, errors, desired } = recordingPusher();
      const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
      fleet.start(pusher);
      await until(() => desired.some(([a]) => a === 'id-good') && errors.some(([a]) => a === 'id-bad'));
      const [, message] = errors.find(([a]) => a === 'id-bad')!;
      expect(message.problems[0]).toMatchObject({
        code: 'CONFIG_INVALID_VALUE',
        line: 3,
        message: expect.stringMatching(
          /^\.gitlab\/agents\/bad\/config\.yaml:3:\d+: gitops\.manifest_projects\[0\]\.id: /,
        ),
      });
      expect(registry.status.get('id-bad')?.configProblems?.[0].code).toBe('CONFIG_INVALID_VALUE');
      expect(git.watched.sort()).toEqual(['gitops-project', 'kubernetes-agent']);
      fleet.close();
    },
  );

  it('an agent record with an invalid config project is that agent problem; the others start', async () => {
    const git = new TenantGit({ good: CONFIG });
    const registry = fakeRegistry([record('bad', { configProject: '../../etc' }), record('good')]);
    const { pusher, desired } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => desired.some(([a]) => a === 'id-good'));
    expect(fleet.errorMessages('id-bad')).toEqual([
      {
        type: 'error',
        problems: [
          expect.objectContaining({
            code: 'CONFIG_PROJECT_INVALID',
            message: expect.stringContaining('config project "../../etc" is not a GitLab project path'),
          }),
        ],
      },
    ]);
    expect(registry.status.get('id-bad')?.configProblems?.[0].code).toBe('CONFIG_PROJECT_INVALID');
    expect(git.watched).not.toContain('../../etc');
    fleet.close();
  });

  it('a Git source that refuses a watch, and a pusher that throws, are logged and counted, never unhandled', async () => {
    const git = new (class extends TenantGit {
      override watch(
        project: string,
        ref: GitRef,
        onCommit: (e: CommitEvent) => void,
        onError: (e: SourceErrorEvent) => void,
      ): () => void {
        if (project === 'broken-project') throw new UserError('GIT_BAD_PROJECT_ID', 'no such thing');
        return super.watch(project, ref, onCommit, onError);
      }
    })({ a: 'gitops:\n  manifest_projects:\n  - id: broken-project\n  - id: gitops-project\n', b: CONFIG });
    const registry = fakeRegistry([record('a'), record('b')]);
    const { pusher, errors, desired } = recordingPusher();
    const failures: unknown[] = [];
    const logger: Logger = Object.assign(silentLogger(), {
      error: (fields: unknown, msg: unknown) => {
        failures.push([fields, msg]);
      },
    });
    const metrics = createServerMetrics();
    const rejections: unknown[] = [];
    const onRejection = (r: unknown): void => {
      rejections.push(r);
    };
    process.on('unhandledRejection', onRejection);
    try {
      const fleet = new Fleet({
        git,
        logger,
        metrics,
        registry,
      });
      // agent a's sessions throw on every desired push (a bug in one agent's path).
      fleet.start({
        ...pusher,
        pushDesired: (id, e) => {
          if (id === 'id-a') throw new Error('boom');
          pusher.pushDesired(id, e);
        },
      });
      await until(() => desired.some(([a]) => a === 'id-b') && failures.length > 0);
      await new Promise((r) => setTimeout(r, 50));
      expect(errors).toContainEqual([
        'id-a',
        {
          type: 'error',
          project: 'broken-project',
          problems: [{ code: 'GIT_BAD_PROJECT_ID', message: 'broken-project: cannot be watched: no such thing' }],
        },
      ]);
      expect(failures).toContainEqual([
        expect.objectContaining({ task: 'push project', agent: 'a', error: 'boom' }),
        FLEET_TASK_FAILED,
      ]);
      expect((await metrics.backgroundFailures.get()).values.find((v) => v.labels.task === 'push project')?.value).toBe(
        1,
      );
      expect(rejections).toEqual([]);
      fleet.close();
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});

describe('Fleet: config.yaml size', () => {
  it('reports a config.yaml the Git layer refused by size as CONFIG_TOO_LARGE with the size and the limit', async () => {
    const git = new (class extends TenantGit {
      override async readFile(_p?: string, _c?: string, path?: string): Promise<string> {
        if (path?.includes('/big/'))
          throw new UserError('GIT_FILE_TOO_LARGE', 'too large', { data: { bytes: 40 * 1024 * 1024, file: path } });
        return CONFIG;
      }
    })({});
    const registry = fakeRegistry([record('big'), record('good')]);
    const { pusher, desired } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(
      () => desired.some(([a]) => a === 'id-good') && registry.status.get('id-big')?.configProblems !== undefined,
    );
    expect(registry.status.get('id-big')?.configProblems).toEqual([
      {
        code: 'CONFIG_TOO_LARGE',
        file: '.gitlab/agents/big/config.yaml',
        message: expect.stringContaining(
          '.gitlab/agents/big/config.yaml: 40.0 MiB (41943040 bytes) is over the 128 KiB limit',
        ),
      },
    ]);
    fleet.close();
  });
});

describe('Fleet: a file matched by two globs', () => {
  it("reports it as the config's problem at the second glob's line and column, as config check does", async () => {
    const twoGlobs =
      "gitops:\n  manifest_projects:\n  - id: gitops-project\n    paths:\n    - glob: '**/*.yaml'\n    - glob: 'app/*.yaml'\n";
    const git = new (class extends TenantGit {
      override async readFiles(): Promise<ManifestFile[]> {
        throw new UserError('GIT_GLOBS_OVERLAP', 'app/a.yaml: matched by two globs', {
          data: { file: 'app/a.yaml', project: 'gitops-project', commit: C1, globs: [0, 1] },
        });
      }
    })({ agent1: twoGlobs });
    const registry = fakeRegistry([record('agent1')]);
    const { pusher } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => registry.status.get('id-agent1')?.sourceProblems?.['gitops-project'] !== undefined);
    const problem = registry.status.get('id-agent1')?.sourceProblems?.['gitops-project'];
    expect(problem?.code).toBe('CONFIG_GLOBS_OVERLAP');
    expect(problem?.message).toMatch(
      /^\.gitlab\/agents\/agent1\/config\.yaml:6:\d+: gitops\.manifest_projects\[0\]\.paths\[1\]\.glob: app\/a\.yaml is matched by this glob and by paths\[0\] \(line 5\)/,
    );
    fleet.close();
  });
});

describe('Fleet: which manifest projects an agent may read', () => {
  const TENANT_B =
    "gitops:\n  manifest_projects:\n  - id: gitops-project\n  - id: tenant-b/secret-manifests\n    paths:\n    - glob: '**/*.yaml'\n";

  it('never watches or reads a project outside the agent hierarchy, reports it with file:line and the command, and follows the registry when an operator allows it', async () => {
    const git = new TenantGit({ agent1: TENANT_B });
    const registry = fakeRegistry([record('agent1')]);
    const { pusher, errors, desired, configs } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => desired.length === 1);
    await new Promise((r) => setTimeout(r, 20));
    expect(desired.map(([, e]) => e.project)).toEqual(['gitops-project']);
    expect(git.watched).not.toContain('tenant-b/secret-manifests');
    expect(git.read).not.toContain('tenant-b/secret-manifests');
    const problem = {
      code: 'CONFIG_PROJECT_NOT_ALLOWED',
      file: '.gitlab/agents/agent1/config.yaml',
      line: 4,
      message:
        ".gitlab/agents/agent1/config.yaml:4: gitops.manifest_projects[1].id: tenant-b/secret-manifests is outside the root level of this agent's config project kubernetes-agent (only other root-level projects), and the registry does not allow it for this agent; it is not read. An operator can allow it with `gitops-server agent allow agent1 --project tenant-b/secret-manifests`",
    };
    expect(errors).toEqual([['id-agent1', { type: 'error', problems: [problem] }]]);
    expect(configs.at(-1)).toEqual([
      'id-agent1',
      expect.objectContaining({ projects: ['gitops-project'], errors: [problem] }),
    ]);
    expect(registry.status.get('id-agent1')?.configProblems).toEqual([problem]);
    // What a session that connects now is told.
    expect(fleet.configMessage('id-agent1')).toMatchObject({ projects: ['gitops-project'], errors: [problem] });
    expect(fleet.errorMessages('id-agent1')).toEqual([{ type: 'error', problems: [problem] }]);
    expect(fleet.projectsOf('id-agent1')).toEqual(['gitops-project']);
    expect((await fleet.desired('id-agent1')).map((e) => e.project)).toEqual(['gitops-project']);

    // The operator allows the group: the running fleet re-evaluates without a new commit.
    registry.replace(record('agent1', { allowProjects: ['tenant-b/'] }));
    await until(() => desired.some(([, e]) => e.project === 'tenant-b/secret-manifests'));
    expect(git.watched).toContain('tenant-b/secret-manifests');
    expect(registry.status.get('id-agent1')?.configProblems).toBeUndefined();
    expect(configs.at(-1)).toEqual([
      'id-agent1',
      expect.objectContaining({ projects: ['gitops-project', 'tenant-b/secret-manifests'], errors: [] }),
    ]);
    expect(fleet.errorMessages('id-agent1')).toEqual([]);

    // And takes it back: the watch goes, the problem comes back.
    registry.replace(record('agent1'));
    expect(fleet.projectsOf('id-agent1')).toEqual(['gitops-project']);
    expect(fleet.watchCount).toBe(2);
    expect(registry.status.get('id-agent1')?.configProblems?.[0].code).toBe('CONFIG_PROJECT_NOT_ALLOWED');
    fleet.close();
  });

  it('agents sharing one config.yaml blob are checked one by one', async () => {
    const git = new (class extends TenantGit {
      async fileId(): Promise<string> {
        return 'same-blob';
      }
    })({ a: TENANT_B, b: TENANT_B });
    const registry = fakeRegistry([record('a'), record('b', { allowProjects: ['tenant-b/secret-manifests'] })]);
    const { pusher, desired } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => desired.length === 3);
    await new Promise((r) => setTimeout(r, 20));
    expect(desired.map(([a, e]) => `${a} ${e.project}`).sort()).toEqual([
      'id-a gitops-project',
      'id-b gitops-project',
      'id-b tenant-b/secret-manifests',
    ]);
    fleet.close();
  });
});

describe('Fleet: one Git watch per (project, ref)', () => {
  it('watches a config project that is also a manifest project once, and both roles follow its commits', async () => {
    // As the real source does: a second watch of a watched (project, ref) is refused.
    const live = new Set<string>();
    const git = new (class extends TenantGit {
      override watch(
        project: string,
        ref: GitRef,
        onCommit: (e: CommitEvent) => void,
        onError: (e: SourceErrorEvent) => void,
      ): () => void {
        const key = `${project} ${JSON.stringify(ref)}`;
        if (live.has(key)) throw new UserError('GIT_ALREADY_WATCHED', `${key} is already watched`);
        live.add(key);
        const stop = super.watch(project, ref, onCommit, onError);
        return () => {
          live.delete(key);
          stop();
        };
      }
    })({
      a: 'gitops:\n  manifest_projects:\n  - id: kubernetes-agent\n',
      b: 'gitops:\n  manifest_projects:\n  - id: kubernetes-agent\n  - id: gitops-project\n',
    });
    const registry = fakeRegistry([record('a'), record('b')]);
    const { pusher, desired, errors } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => desired.length === 3);
    expect(errors).toEqual([]);
    expect(git.watched.sort()).toEqual(['gitops-project', 'kubernetes-agent']);
    expect(fleet.watchCount).toBe(2);
    expect(desired.map(([a, e]) => `${a} ${e.project}@${e.commit.slice(0, 1)}`).sort()).toEqual([
      'id-a kubernetes-agent@a',
      'id-b gitops-project@a',
      'id-b kubernetes-agent@a',
    ]);

    // A new commit of the shared project: configs are read again and its desired state goes out.
    git.emit('kubernetes-agent', C2);
    await until(() => desired.filter(([, e]) => e.commit === C2).length === 2);
    expect(
      desired
        .filter(([, e]) => e.commit === C2)
        .map(([a]) => a)
        .sort(),
    ).toEqual(['id-a', 'id-b']);

    // The watch stays while either role has a follower, and goes with the last one.
    registry.replace(record('b', { revokedAt: '2026-01-01T00:00:00.000Z' }));
    expect(fleet.watchCount).toBe(1);
    fleet.close();
    expect(live.size).toBe(0);
  });
});

describe('Fleet: joining a watch that has a problem', () => {
  it('tells an agent that starts to follow a project while it is unreadable, in its status and its sessions', async () => {
    const problem = { code: 'GIT_UNREACHABLE', message: 'kubernetes-agent: cannot reach the Git host' };
    const git = new (class extends TenantGit {
      override watch(
        project: string,
        ref: GitRef,
        onCommit: (e: CommitEvent) => void,
        onError: (e: SourceErrorEvent) => void,
      ): () => void {
        const stop = super.watch(project, ref, onCommit, onError);
        // The shared project's first check finds a commit, the next one fails.
        if (project === 'kubernetes-agent') setTimeout(() => onError({ project, ref, problem }), 20);
        return stop;
      }
    })({ a: '', b: 'gitops:\n  manifest_projects:\n  - id: kubernetes-agent\n' });
    const registry = fakeRegistry([record('a'), record('b', { configProject: 'team-b/config' })]);
    const { pusher, errors } = recordingPusher();
    const fleet = new Fleet({ git, logger: silentLogger(), metrics: createServerMetrics(), registry });
    fleet.start(pusher);
    await until(() => errors.some(([a]) => a === 'id-a'));
    // b's config names the project only now (an operator allows it): b joins the failing watch.
    expect(registry.status.get('id-b')?.sourceProblems).toBeUndefined();
    const told = () => errors.filter(([a, m]) => a === 'id-b' && m.project === 'kubernetes-agent');
    expect(told()).toEqual([]);
    registry.replace(record('b', { configProject: 'team-b/config', allowProjects: ['kubernetes-agent'] }));
    await until(() => told().length > 0);
    expect(told()).toEqual([['id-b', { type: 'error', project: 'kubernetes-agent', problems: [problem] }]]);
    expect(registry.status.get('id-b')?.sourceProblems).toEqual({ 'kubernetes-agent': problem });
    fleet.close();
  });
});
