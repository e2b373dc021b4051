/**
 * A new user's first hour (issue 23): the server chmods its state dir to 0700, so on a volume it
 * does not own (Kubernetes with `fsGroup` gives root:<fsGroup> 2775; emptyDir, local-path and
 * hostPath volumes are 0777 or 2777) it stopped at start with `EPERM: operation not permitted,
 * chmod`, as `agent create` did.
 *
 * The real server (dist/bin) as uid/gid 1000 (supplementary group 1000, as fsGroup adds it), as
 * manifests/server runs it (runAsUser/runAsGroup/fsGroup 1000), on a volume mounted as the
 * Deployment mounts one: a tmpfs mounted in a private mount namespace (`unshare --mount`, so
 * nothing outlives the test), root:1000 2775 or root:root 0777. It starts, warns once naming the
 * mode and owner, writes its files 0600, and `agent create` as uid 1000 in the same mount namespace
 * (`nsenter`) adds an agent; SIGTERM stops it with 0. A plain folder (no mount) that is 0777 is
 * refused, since any user could have made it so; one uid 1000 cannot write is refused naming the
 * fix. Needs root (to mount, and to become uid 1000), as the test machine runs tests.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { repoRoot } from '../harness/controlplane.js';
import { waitFor } from '../harness/wait.js';

const SERVER = path.join(repoRoot(), 'dist/bin/gitops-server.js');
const POD_UID = 1000;
/** setpriv arguments that make the process what the Deployment's securityContext makes it. */
const AS_POD = ['setpriv', `--reuid=${POD_UID}`, `--regid=${POD_UID}`, `--groups=${POD_UID}`, '--'];

let tmp: string;
let repos: string;

beforeAll(async () => {
  expect({ uid: process.getuid?.() }).toEqual({ uid: 0 }); // this test mounts volumes and becomes uid 1000
  tmp = await mkdtemp(path.join(tmpdir(), 'gitops-state-volume-'));
  await chmod(tmp, 0o755); // uid 1000 must reach the folders inside
  repos = path.join(tmp, 'repos');
  await mkdir(repos, { mode: 0o755 });
  // dist must be readable by uid 1000 (it is built by root with umask 022).
  expect(await run([...AS_POD, process.execPath, SERVER, '--version'])).toMatchObject({ code: 0 });
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : null
        : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface Server {
  child: ChildProcess;
  pid: number;
  out(): string;
  exited: Promise<number | null>;
}

/** The server as uid 1000, its state dir a tmpfs of this mode and owner, in its own mount namespace. */
function serveOnVolume(stateDir: string, mount: { mode: string; uid: number; gid: number }): Server {
  const script = 'mount -t tmpfs -o "size=16m,mode=$1,uid=$2,gid=$3" gitops-state "$4" && shift 4 && exec "$@"';
  const child = spawn(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      script,
      'sh',
      mount.mode,
      String(mount.uid),
      String(mount.gid),
      stateDir,
      ...AS_POD,
      process.execPath,
      SERVER,
      'serve',
      '--git-root',
      repos,
      '--state-dir',
      stateDir,
      '--tls-self-signed',
      '--listen',
      '127.0.0.1:0',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, pid: child.pid as number, out: () => out, exited };
}

/** Log records of a JSON log. */
const records = (out: string): Record<string, unknown>[] =>
  out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Mode bits and owner of every entry of a folder, "0600 1000:1000". */
async function modes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) {
    const st = await stat(path.join(dir, name));
    out[name] = `${(st.mode & 0o7777).toString(8).padStart(4, '0')} ${st.uid}:${st.gid}`;
  }
  return out;
}

/** Entries that others than their owner may read or write (the certificates are public). */
const notPrivate = (entries: Record<string, string>): string[] =>
  Object.entries(entries)
    .filter(([name, m]) => !['tls.crt', 'ca.crt'].includes(name) && (parseInt(m.slice(0, 4), 8) & 0o077) !== 0)
    .map(([n, m]) => `${n} ${m}`);

describe('the server on a volume it does not own, as uid 1000', () => {
  it.each([
    ['root:1000 2775 (a volume with fsGroup 1000)', { mode: '2775', uid: 0, gid: 1000 }, 'group-writable'],
    [
      'root:root 0777 (emptyDir, local-path, hostPath)',
      { mode: '0777', uid: 0, gid: 0 },
      'writable by every user (a mounted volume)',
    ],
  ])('%s: starts, warns once, writes its files 0600, and agent create works there', async (_name, mount, looseness) => {
    const stateDir = path.join(tmp, `volume-${mount.mode}`);
    await mkdir(stateDir);
    const server = serveOnVolume(stateDir, mount);
    try {
      await waitFor(
        () => server.out().includes('"server listening"') || server.child.exitCode !== null,
        20_000,
        'server listening',
      );
      expect(server.child.exitCode).toBeNull();
      const warnings = records(server.out()).filter((r) => r.level === 'warn' && String(r.msg).startsWith('state dir'));
      expect(warnings).toEqual([
        expect.objectContaining({
          msg: 'state dir is not private and cannot be made so; files inside are written 0600',
          stateDir,
          mode: mount.mode,
          owner: `${mount.uid}:${mount.gid}`,
          looseness,
          why: 'not its owner',
        }),
      ]);

      const create = await run([
        'nsenter',
        `--target=${server.pid}`,
        '--mount',
        '--',
        ...AS_POD,
        process.execPath,
        SERVER,
        'agent',
        'create',
        'agent1',
        '--config-project',
        'group/kubernetes-agent',
        '--state-dir',
        stateDir,
      ]);
      expect(create).toMatchObject({ code: 0, stdout: expect.stringMatching(/^gitops_agent_/) });
      // The server's mount namespace, where the volume is.
      const seen = `/proc/${server.pid}/root${stateDir}`;
      const st = await stat(seen);
      expect({ mode: (st.mode & 0o7777).toString(8), uid: st.uid }).toEqual({
        mode: mount.mode.replace(/^0/, ''),
        uid: mount.uid,
      });
      // New entries inherit the group of a setgid folder (2775); their modes are the server's.
      const group = mount.mode.startsWith('2') ? mount.gid : POD_UID;
      const entries = await modes(seen);
      expect(entries).toEqual(
        expect.objectContaining({
          'agents.json': `0600 ${POD_UID}:${group}`,
          'tls.key': `0600 ${POD_UID}:${group}`,
          'tls.crt': `0644 ${POD_UID}:${group}`,
          'ca.crt': `0644 ${POD_UID}:${group}`,
        }),
      );
      expect(notPrivate(entries)).toEqual([]);
      const list = await run([
        'nsenter',
        `--target=${server.pid}`,
        '--mount',
        '--',
        ...AS_POD,
        process.execPath,
        SERVER,
        'agent',
        'list',
        '--state-dir',
        stateDir,
      ]);
      expect(list).toMatchObject({ code: 0, stdout: expect.stringContaining('agent1') });
    } finally {
      server.child.kill('SIGTERM');
    }
    expect(await server.exited).toBe(0);
  });
});

describe('a state dir uid 1000 must not or cannot use', () => {
  it.each([
    [
      'a plain 0777 root:root folder (anyone could have made it so)',
      0o777,
      'STATE_DIR_WORLD_WRITABLE',
      /the state dir \(0777, owner 0:0\) is writable by every user, and this process \(uid 1000\) cannot tighten it \(not its owner\): anyone could add an agent to its registry\. As its owner \(or root\) run `chmod o-w /,
    ],
    [
      'a plain 1777 root:root folder (sticky, as /tmp)',
      0o1777,
      'STATE_DIR_WORLD_WRITABLE',
      /\(1777, owner 0:0\) is writable by every user/,
    ],
    [
      'a plain 0755 root:root folder',
      0o755,
      'STATE_DIR_NOT_WRITABLE',
      /\(0755, owner 0:0\) is not writable by this process \(uid 1000, gid 1000\), which cannot change its mode either \(not its owner\)\. As root run `chown 1000 /,
    ],
  ])(
    '%s: serve and agent create refuse it, naming mode, owner and the fix, and write nothing',
    async (_name, mode, _code, message) => {
      const stateDir = path.join(tmp, `plain-${mode.toString(8)}`);
      await mkdir(stateDir);
      await chown(stateDir, 0, 0);
      await chmod(stateDir, mode);
      const serve = await run([
        ...AS_POD,
        process.execPath,
        SERVER,
        'serve',
        '--git-root',
        repos,
        '--state-dir',
        stateDir,
        '--tls-self-signed',
        '--listen',
        '127.0.0.1:0',
      ]);
      expect(serve.code).toBe(2);
      expect(serve.stderr).toMatch(new RegExp(`^error: ${stateDir}: `));
      expect(serve.stderr).toMatch(message);
      const create = await run([
        ...AS_POD,
        process.execPath,
        SERVER,
        'agent',
        'create',
        'agent1',
        '--config-project',
        'group/kubernetes-agent',
        '--state-dir',
        stateDir,
      ]);
      expect(create).toMatchObject({ code: 2, stdout: '' });
      expect(create.stderr).toMatch(message);
      expect(await readdir(stateDir)).toEqual([]);
      expect((await stat(stateDir)).mode & 0o7777).toBe(mode);
    },
  );

  it('a plain root:1000 2775 folder is used as it is, with the warning (group-writable needs no mount)', async () => {
    const stateDir = path.join(tmp, 'plain-2775');
    await mkdir(stateDir);
    await chown(stateDir, 0, POD_UID);
    await chmod(stateDir, 0o2775);
    const create = await run([
      ...AS_POD,
      process.execPath,
      SERVER,
      'agent',
      'create',
      'agent1',
      '--config-project',
      'group/kubernetes-agent',
      '--state-dir',
      stateDir,
    ]);
    expect(create).toMatchObject({ code: 0, stdout: expect.stringMatching(/^gitops_agent_/) });
    expect(await modes(stateDir)).toEqual({ 'agents.json': `0600 ${POD_UID}:${POD_UID}` });
  });
});
