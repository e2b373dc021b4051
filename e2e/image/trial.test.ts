// The container image's local trial, as README.md and docs/operations.md show it: the documents'
// blocks must be exactly the commands of scripts/image-trial.sh, and that script must work. It
// builds the image with scripts/podman-image.sh (the stand-in base is cached), makes a folder of
// repositories with the real git CLI (a config project and a manifest project), runs the
// documented `up` commands (server container, `agent create` inside it, agent container on the
// host network against the test control plane), commits a ConfigMap and waits for it in the
// cluster, then runs the documented `down` commands and checks that no container or volume is
// left. Podman is required, never skipped: .ci/run installs it, and a machine without it fails here
// with what to install.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { CoreV1Api } from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createRepo, type TestRepo } from '../harness/git-repo.js';
import { freshNamespace, testKubeConfig, waitFor, type TestNamespace } from '../harness/kube.js';

const run = promisify(execFile);

/**
 * Podman bind-mounts /run/netns on itself for the server container's network namespace and leaves
 * the mount once the containers are gone; nothing of ours is inside then, and podman mounts it
 * again when it next needs one. Unmounted only when empty, so a namespace in use is never touched.
 */
async function unmountEmptyNetns(): Promise<void> {
  const mounted = (await readFile('/proc/mounts', 'utf8')).split('\n').some((l) => l.split(' ')[1] === '/run/netns');
  if (mounted && (await readdir('/run/netns').catch(() => ['?'])).length === 0) await run('umount', ['/run/netns']);
}
const ROOT = new URL('../../', import.meta.url).pathname;
const TRIAL = join(ROOT, 'scripts/image-trial.sh');
const BUILD = join(ROOT, 'scripts/podman-image.sh');
const IMAGE = 'gitops:dev';
const CONTAINERS = ['gitops-server', 'gitops-agent'];
const VOLUME = 'gitops-server-state';
/** Host ports the documented commands use. */
const PORTS = [8443, 8080];

/** The lines between `# docs: NAME` and `# end docs` in the trial script, by NAME. */
function scriptBlocks(script: string): Map<string, string> {
  const blocks = new Map<string, string>();
  for (const m of script.matchAll(/^# docs: (\S+)\n([\s\S]*?)^# end docs$/gm)) blocks.set(m[1]!, m[2]!.trimEnd());
  return blocks;
}

/**
 * The ```sh blocks of the Markdown section whose heading is exactly `heading` (up to the next heading of the same or a
 * higher level).
 */
function sectionShellBlocks(markdown: string, heading: string): string[] {
  const lines = markdown.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) throw new Error(`no heading "${heading}"`);
  const level = /^#+/.exec(heading)![0].length;
  let end = lines.findIndex((l, i) => i > start && new RegExp(`^#{1,${level}} `).test(l));
  if (end < 0) end = lines.length;
  const section = lines.slice(start + 1, end).join('\n');
  return [...section.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!.trimEnd());
}

async function sh(
  cmd: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeoutMs,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${cmd} ${args.join(' ')} failed: ${e.message}\nstdout: ${e.stdout ?? ''}\nstderr: ${e.stderr ?? ''}`,
    );
  }
}

async function podman(...args: string[]): Promise<string> {
  return (
    await sh('podman', ['--runtime', process.env.PODMAN_RUNTIME ?? 'runc', ...args], { timeoutMs: 60_000 })
  ).stdout.trim();
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('the documented image trial', () => {
  it('is, in README.md and docs/operations.md, exactly what scripts/image-trial.sh runs', async () => {
    const blocks = scriptBlocks(await readFile(TRIAL, 'utf8'));
    expect([...blocks.keys()]).toEqual(['up', 'down']);
    for (const [file, heading] of [
      ['README.md', '## Container image'],
      ['docs/operations.md', '### Local trials with `docker run`'],
    ] as const) {
      const docBlocks = sectionShellBlocks(await readFile(join(ROOT, file), 'utf8'), heading);
      for (const [name, block] of blocks) {
        expect({ file, name, found: docBlocks.includes(block) }).toEqual({ file, name, found: true });
      }
    }
    // Every image the documents' "Container image" sections build or run is the one the script builds and the trial
    // runs.
    for (const file of ['README.md', 'docs/operations.md']) {
      const images = sectionShellBlocks(await readFile(join(ROOT, file), 'utf8'), '## Container image')
        .flatMap((b) =>
          [...b.matchAll(/ -t (\S+)|(\S+) gitops-(?:server|agent) (?:serve|run|agent|--help|--version)\b/g)].map(
            (m) => m[1] ?? m[2],
          ),
        )
        .filter(
          (word): word is string =>
            word !== undefined && !word.startsWith('-') && !['exec', 'gitops-server'].includes(word),
        );
      expect(images.length).toBeGreaterThanOrEqual(3); // the build, the server and the agent
      expect({ file, images: [...new Set(images)] }).toEqual({ file, images: [IMAGE] });
    }
  });
});

describe('the image trial, run', () => {
  let dir = '';
  let ns: TestNamespace | undefined;
  let manifests: TestRepo | undefined;
  const repos: TestRepo[] = [];
  const times: Record<string, number> = {};
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    KUBECONFIG: process.env.GITOPS_TEST_KUBECONFIG,
    GITOPS_TRIAL_ENGINE: 'podman',
  });

  beforeAll(async () => {
    try {
      await sh('podman', ['--version'], { timeoutMs: 10_000 });
    } catch {
      throw new Error(
        'podman is not installed: this test builds and runs the container image with it. Install it as .ci/run does: apt-get update && apt-get install -y podman buildah runc debootstrap',
      );
    }
    // A killed earlier run leaves its containers; the names are the documented ones.
    await podman('rm', '-f', ...CONTAINERS);
    await podman('volume', 'rm', '-f', VOLUME);
    for (const port of PORTS) {
      if (await portInUse(port))
        throw new Error(
          `port ${port} on 127.0.0.1 is in use: the documented trial needs 8443 (server) and 8080 (agent health) free`,
        );
    }

    let t0 = Date.now();
    await sh('bash', [BUILD, IMAGE], { timeoutMs: 900_000 });
    times.buildMs = Date.now() - t0;

    ns = await freshNamespace('image-trial');
    dir = await mkdtemp(join(tmpdir(), 'gitops-image-trial-'));
    await mkdir(join(dir, 'repos'));
    const config = await createRepo({ root: join(dir, 'repos') }, 'kubernetes-agent');
    repos.push(config);
    await config.commit({
      files: {
        '.gitlab/agents/agent1/config.yaml': `gitops:\n  manifest_projects:\n  - id: gitops-project\n    default_namespace: ${ns.name}\n    paths:\n    - glob: '/**/*.yaml'\n`,
      },
    });
    manifests = await createRepo({ root: join(dir, 'repos') }, 'gitops-project');
    repos.push(manifests);
    await manifests.commit({
      files: { 'first.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\ndata:\n  value: "1"\n' },
    });

    t0 = Date.now();
    const up = await sh('bash', [TRIAL, 'up'], { cwd: dir, env: env(), timeoutMs: 300_000 });
    times.upMs = Date.now() - t0;
    // The script's last command is `agent list`; the server writes the status it shows within
    // 0.5 s (debounced), so the connection may show only in a later one.
    expect(up.stdout).toMatch(/^agent1 +kubernetes-agent /m);
    await waitFor(
      async () =>
        /^agent1 +kubernetes-agent +\S+ +yes/m.test(
          await podman('exec', 'gitops-server', 'gitops-server', 'agent', 'list'),
        ),
      10_000,
      'agent list to show agent1 connected',
    );
  }, 1_200_000);

  afterAll(async () => {
    try {
      // The test runs the documented `down`; this is for a run that failed before it.
      await podman('rm', '-f', ...CONTAINERS);
      await podman('volume', 'rm', '-f', VOLUME);
      await unmountEmptyNetns();
    } finally {
      for (const r of repos) await r.dispose();
      if (dir) await rm(dir, { recursive: true, force: true });
      await ns?.delete();
      // Measured on each run: where the time goes (the build dominates on a cold machine).
      console.log(`image trial: ${JSON.stringify(times)}`);
    }
  }, 180_000);

  it('applies what a commit to the manifest project adds, and down removes every container and the volume', async () => {
    const core = testKubeConfig().makeApiClient(CoreV1Api);
    const namespace = ns!.name;
    await waitFor(
      () => core.readNamespacedConfigMap({ name: 'first', namespace }),
      60_000,
      'the first commit applied by the agent container',
    );

    const t0 = Date.now();
    await manifests!.commit({
      files: {
        'from-commit.yaml': 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-commit\ndata:\n  value: "2"\n',
      },
    });
    const cm = await waitFor(
      () => core.readNamespacedConfigMap({ name: 'from-commit', namespace }),
      60_000,
      'the committed ConfigMap in the cluster (server polls every 5 s)',
    );
    times.commitToClusterMs = Date.now() - t0;
    expect(cm.data).toEqual({ value: '2' });
    // Applied by the agent in the container: it carries the agent's inventory label.
    expect(Object.keys(cm.metadata?.labels ?? {})).toContain('gitops.dev/inventory');

    const t1 = Date.now();
    await sh('bash', [TRIAL, 'down'], { cwd: dir, env: env(), timeoutMs: 120_000 });
    times.downMs = Date.now() - t1;
    const left = await podman('ps', '-a', '--format', '{{.Names}}');
    for (const c of CONTAINERS) expect(left.split('\n')).not.toContain(c);
    expect((await podman('volume', 'ls', '--format', '{{.Name}}')).split('\n')).not.toContain(VOLUME);
    expect((await readdir(dir)).sort()).toEqual(['repos']); // agent1/, with the token and kubeconfig copies, is gone
    // The image stays (the next run's build is cached).
    expect(
      await podman('image', 'exists', IMAGE).then(
        () => true,
        () => false,
      ),
    ).toBe(true);
  }, 180_000);
});
