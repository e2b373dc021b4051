// The product image that e2e/harness/product-image.ts assembles without a container engine, for the
// test node: it must be the image the Dockerfile describes. Checked two ways: the pure parts (the
// Dockerfile's final stage, the production package set) against small tables, and the assembled
// archive against the image podman builds from the real Dockerfile with scripts/podman-image.sh
// (same stand-in base): the same configuration (user, working folder, environment, entrypoint,
// command) and the same file list (path, type, mode, owner, link target; sizes under /app), apart
// from the package manager's own bookkeeping, which a layer of copied package files cannot have.
// Podman is required, never skipped: .ci/run installs it, and a machine without it fails here with
// what to install.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml } from 'yaml';
import {
  BASE_ENV,
  dockerfileInstructions,
  imageConfigOf,
  insideAny,
  parseFinalStage,
  splitPackages,
  writeProductImage,
  type ProductImage,
} from '../harness/product-image.js';

const run = promisify(execFile);
const ROOT = new URL('../../', import.meta.url).pathname;
const BUILD = join(ROOT, 'scripts/podman-image.sh');
const PODMAN_IMAGE = 'gitops:dev';

/**
 * Paths the two images may differ in: what apt and dpkg record about an install (the assembled
 * image copies the package files only) and the files podman writes into every container.
 */
const BOOKKEEPING = [
  'var/lib/dpkg',
  'var/lib/apt',
  'var/cache/apt',
  'etc/hosts',
  'etc/hostname',
  'etc/resolv.conf',
  'run/.containerenv',
];

interface TarEntry {
  mode: string;
  owner: string;
  size: string;
  link?: string;
}

/** `tar -tv --numeric-owner` output as path → entry (a later line for the same path wins, as in a later layer). */
function parseTarListing(listing: string, into = new Map<string, TarEntry>()): Map<string, TarEntry> {
  for (const line of listing.split('\n')) {
    const m = /^(\S{10})\s+(\d+\/\d+)\s+(\S+)\s+\S+\s+\S+\s+(.*)$/.exec(line);
    if (!m) continue;
    let [name, link] = [m[4], undefined as string | undefined];
    for (const sep of [' -> ', ' link to ']) {
      const at = name.indexOf(sep);
      if (at >= 0) [name, link] = [name.slice(0, at), name.slice(at + sep.length)];
    }
    const clean = (p: string): string => p.replace(/^\.\//, '').replace(/\/$/, '');
    name = clean(name);
    if (!name || name === '.') continue;
    // Hard links name their target like the archive's own paths; symlinks keep theirs verbatim.
    if (link !== undefined && m[1].startsWith('h')) link = clean(link);
    into.set(name, { mode: m[1], owner: m[2], size: m[3], ...(link !== undefined ? { link } : {}) });
  }
  return into;
}

/** One line per path: what must be equal in both images. */
function describeEntries(entries: Map<string, TarEntry>): string[] {
  const out: string[] = [];
  for (const [name, e] of entries) {
    if (insideAny(name, BOOKKEEPING)) continue;
    // Sizes prove the same code under /app; elsewhere files come from the same base and packages.
    // npm rewrites node_modules/.package-lock.json when it prunes, with the same entries.
    const size =
      name.startsWith('app/') && e.mode.startsWith('-') && name !== 'app/node_modules/.package-lock.json'
        ? ` ${e.size}`
        : '';
    out.push(`${name} ${e.mode} ${e.owner}${size}${e.link !== undefined ? ` -> ${e.link}` : ''}`);
  }
  return out.sort();
}

async function sh(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  try {
    return (await run(cmd, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.message}\nstderr: ${e.stderr ?? ''}`);
  }
}

describe('the Dockerfile, read', () => {
  it('joins continuation lines, drops comments (also between continued lines) and keeps the order', () => {
    const text = 'FROM a AS b\n# note\nRUN one \\\n  # inside\n  && two\n\nFROM c\nUSER 1000:1000\n';
    expect(dockerfileInstructions(text)).toEqual([
      { op: 'FROM', args: 'a AS b' },
      { op: 'RUN', args: 'one && two' },
      { op: 'FROM', args: 'c' },
      { op: 'USER', args: '1000:1000' },
    ]);
  });

  it.each([
    [
      'ENV pairs over several lines, a later value winning',
      'FROM y\nENV A=1 \\\n    B="two words"\nENV A=3\n',
      { env: ['B=two words', 'A=3'] },
    ],
    [
      'exec-form ENTRYPOINT and CMD',
      'FROM y\nENTRYPOINT []\nCMD ["p", "--help"]\n',
      { entrypoint: [], cmd: ['p', '--help'] },
    ],
    [
      'COPY with --from',
      'FROM y\nCOPY --from=build /app/dist ./dist\n',
      { copies: [{ from: 'build', sources: ['/app/dist'], dest: './dist' }] },
    ],
  ])('parses %s', (_name, text, expected) => {
    expect(parseFinalStage(text)).toMatchObject(expected);
  });

  it("reads the last stage only: an earlier stage's USER is not the image's", () => {
    const stage = parseFinalStage('FROM x AS build\nUSER 5\nFROM y\nWORKDIR /w\n');
    expect(stage).toMatchObject({ from: 'y', workdir: '/w' });
    expect(stage.user).toBeUndefined();
  });

  it('refuses the shell form of CMD rather than guess how it would be split', () => {
    expect(() => parseFinalStage('FROM y\nCMD run me\n')).toThrow(/JSON \(exec\) form/);
  });

  it('gives an image configuration with the stage overriding the base per key and no empty entrypoint', () => {
    const stage = parseFinalStage('FROM y\nENV PATH=/p X=1\nWORKDIR /app\nUSER 1000:1000\nENTRYPOINT []\nCMD ["a"]\n');
    expect(imageConfigOf(stage, ['PATH=/usr/bin', 'BASE=1'])).toEqual({
      Env: ['BASE=1', 'PATH=/p', 'X=1'],
      Cmd: ['a'],
      WorkingDir: '/app',
      User: '1000:1000',
    });
  });

  it('runs as the numeric user manifests/agent requires (runAsNonRoot can only check a numeric USER)', async () => {
    const stage = parseFinalStage(await readFile(join(ROOT, 'Dockerfile'), 'utf8'));
    const deployment = parseYaml(await readFile(join(ROOT, 'manifests/agent/base/deployment.yaml'), 'utf8')) as {
      spec: { template: { spec: { securityContext: { runAsUser: number; runAsGroup: number } } } };
    };
    const sc = deployment.spec.template.spec.securityContext;
    expect(stage.user).toBe(`${sc.runAsUser}:${sc.runAsGroup}`);
  });
});

describe('the production packages', () => {
  it.each([
    [
      'dev entries apart, nested ones included, the root entry ignored',
      {
        lockfileVersion: 3,
        packages: {
          '': {},
          'node_modules/a': {},
          'node_modules/b': { dev: true },
          'node_modules/a/node_modules/c': { dev: true },
          'node_modules/@s/d': {},
        },
      },
      { production: ['node_modules/@s/d', 'node_modules/a'], dev: ['node_modules/a/node_modules/c', 'node_modules/b'] },
    ],
  ])('%s', (_name, lock, expected) => {
    expect(splitPackages(lock)).toEqual(expected);
  });

  it('refuses a lockfile v1, which has no per-path package list', () => {
    expect(() => splitPackages({ lockfileVersion: 1 })).toThrow(/lockfileVersion 2 or 3/);
  });

  it.each([
    ['node_modules/a/bin/x', true],
    ['node_modules/a', true],
    ['node_modules/ab/x', false],
  ])('insideAny(%s) is %s', (file, expected) => {
    expect(insideAny(file, ['node_modules/a'])).toBe(expected);
  });

  it('reads a tar listing: symlinks verbatim, hard links like paths, folders without their slash', () => {
    const listing = [
      'drwxr-xr-x 0/0               0 2026-12-04 21:31 ./app/',
      'lrwxrwxrwx 0/0               0 2026-12-04 21:31 usr/local/bin/x -> /app/x.js',
      'hrwxr-xr-x 0/0               0 2026-12-04 21:31 ./usr/bin/b link to ./usr/bin/a',
      'crw-rw-rw- 0/0             1,3 2026-12-04 21:31 dev/null',
    ].join('\n');
    expect(Object.fromEntries(parseTarListing(listing))).toEqual({
      app: { mode: 'drwxr-xr-x', owner: '0/0', size: '0' },
      'usr/local/bin/x': { mode: 'lrwxrwxrwx', owner: '0/0', size: '0', link: '/app/x.js' },
      'usr/bin/b': { mode: 'hrwxr-xr-x', owner: '0/0', size: '0', link: 'usr/bin/a' },
      'dev/null': { mode: 'crw-rw-rw-', owner: '0/0', size: '1,3' },
    });
  });
});

describe('the assembled product image next to the one podman builds from the Dockerfile', () => {
  let dir = '';
  let image: ProductImage;
  let podmanConfig: Record<string, unknown> = {};
  let podmanFiles = new Map<string, TarEntry>();

  beforeAll(async () => {
    await sh('podman', ['--version'], 10_000).catch((err: unknown) => {
      throw new Error(
        `podman is required to compare the assembled image with the Dockerfile's (apt-get install -y podman buildah runc debootstrap; .ci/run does): ${(err as Error).message}`,
      );
    });
    dir = await mkdtemp(join(tmpdir(), 'gitops-product-image-'));
    // Built first: the stand-in base the assembled image reads is made by this script.
    await sh('bash', [BUILD, PODMAN_IMAGE], 900_000);
    const assembled = await writeProductImage(ROOT, join(dir, 'gitops.tar'));
    // Once more: the base layer is cached after the first time, and this is what a test run pays.
    image = await writeProductImage(ROOT, join(dir, 'gitops.tar'));
    process.stdout.write(
      `product image assembled in ${assembled.assemblyMs} ms (cold), ${image.assemblyMs} ms (base layer cached)\n`,
    );
    podmanConfig = JSON.parse(
      await sh('podman', ['image', 'inspect', '--format', '{{json .Config}}', PODMAN_IMAGE], 30_000),
    ) as Record<string, unknown>;
    const id = (await sh('podman', ['create', PODMAN_IMAGE], 60_000)).trim();
    try {
      await sh('podman', ['export', '-o', join(dir, 'podman.tar'), id], 120_000);
    } finally {
      await sh('podman', ['rm', id], 30_000);
    }
    podmanFiles = parseTarListing(await sh('tar', ['-tv', '--numeric-owner', '-f', join(dir, 'podman.tar')], 60_000));
  }, 1_200_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('has the configuration podman gives the Dockerfile: user, working folder, environment, entrypoint, command', () => {
    const pick = (c: Record<string, unknown>): Record<string, unknown> => ({
      User: c.User,
      WorkingDir: c.WorkingDir,
      Env: c.Env,
      Cmd: c.Cmd,
      Entrypoint: c.Entrypoint ?? null,
    });
    expect(pick(image.config as Record<string, unknown>)).toEqual(pick(podmanConfig));
    expect(image.config.Env).toEqual(expect.arrayContaining(BASE_ENV));
  });

  it('holds the same files: path, type, mode, owner and link target, and under /app the same sizes', async () => {
    const layers = join(dir, 'layers');
    await sh('mkdir', ['-p', layers], 5000);
    await sh('tar', ['-C', layers, '-xf', image.file], 60_000);
    const manifest = JSON.parse(await readFile(join(layers, 'manifest.json'), 'utf8')) as Array<{
      RepoTags: string[];
      Layers: string[];
    }>;
    expect(manifest[0].RepoTags).toEqual([image.ref]);
    const assembled = new Map<string, TarEntry>();
    for (const layer of manifest[0].Layers)
      parseTarListing(await sh('tar', ['-tv', '--numeric-owner', '-f', join(layers, layer)], 60_000), assembled);
    const ours = describeEntries(assembled);
    const theirs = describeEntries(podmanFiles);
    const theirsSet = new Set(theirs);
    const oursSet = new Set(ours);
    expect({
      onlyAssembled: ours.filter((l) => !theirsSet.has(l)),
      onlyPodman: theirs.filter((l) => !oursSet.has(l)),
    }).toEqual({ onlyAssembled: [], onlyPodman: [] });
    // Not an empty comparison: the programs, their links and the state folders are there.
    expect(ours).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^app\/dist\/bin\/gitops-agent\.js -rwxr-xr-x 0\/0 \d+$/),
        'usr/local/bin/gitops-agent lrwxrwxrwx 0/0 -> /app/dist/bin/gitops-agent.js',
        'var/lib/gitops-agent drwxr-xr-x 1000/1000',
        expect.stringMatching(/^usr\/bin\/openssl -rwxr-xr-x 0\/0$/),
      ]),
    );
  }, 120_000);
});
