/**
 * The product's own container image, made without a registry and without a container engine, for
 * the test node (e2e/harness/node.ts) and `npm run demo`: the layout the Dockerfile's final stage
 * describes, assembled from files on this machine into a docker-archive tarball that
 * `ctr images import` accepts. One layer per step of the Dockerfile:
 *
 * 1. `FROM node:24-bookworm-slim`: the same locally made stand-in base that scripts/podman-image.sh
 *    imports under that name (a debootstrap bookworm root with Node 24 and a `node` user, uid 1000),
 *    read from its cache folder (made by `podman-image.sh --rootfs` when missing); tarred once and
 *    cached beside it.
 * 2. `RUN apt-get install openssl`: the files of Debian's `openssl` and `libssl3` packages as
 *    installed on this machine (`dpkg -L`), the same Debian release as the base.
 * 3. The `COPY --from=build` lines and the last `RUN`: `/app/package.json`, `/app/dist` (bin/ and
 *    src/ only, as the image's build context holds no tests, without source maps), the production
 *    `node_modules` (package-lock.json's packages not marked `dev`, without type declarations and
 *    source maps, as `npm prune --omit=dev` and the Dockerfile's `find` leave it), the two PATH
 *    links and the state folders owned by uid 1000.
 *
 * The image configuration (user, working folder, environment, entrypoint, command) is read from the
 * Dockerfile's final stage by {@link parseFinalStage}, not written down a second time.
 * e2e/image/product-image.test.ts checks the result against the image podman builds from the real
 * Dockerfile: configuration and file list.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ImageRuntimeConfig } from './images.js';

const run = promisify(execFile);

/** The reference the test overlay of manifests/agent names (e2e/node/overlay). */
export const PRODUCT_IMAGE = 'localhost/gitops:e2e';

/**
 * The environment of the stand-in base as scripts/podman-image.sh imports it (`--change ENV`) plus
 * the PATH every image gets; the official node image sets PATH the same way.
 */
export const BASE_ENV = [
  'NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt',
  'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
];

/** The Debian packages `apt-get install -y --no-install-recommends openssl` adds to the base. */
const OPENSSL_PACKAGES = ['openssl', 'libssl3'];
const PRIVATE_DIR = 'etc/ssl/private';

/** What the final stage of a Dockerfile says about the image it makes. */
export interface DockerfileStage {
  from: string;
  user?: string;
  workdir?: string;
  /** `KEY=value`, in order. */
  env: string[];
  entrypoint?: string[];
  cmd?: string[];
  /** Each COPY: `--from` stage (if any), sources and destination. */
  copies: Array<{ from?: string; sources: string[]; dest: string }>;
  /** Each RUN's shell command, continuation lines joined. */
  runs: string[];
}

/** The Dockerfile's instructions: comments dropped, `\`-continued lines joined. */
export function dockerfileInstructions(text: string): Array<{ op: string; args: string }> {
  const out: Array<{ op: string; args: string }> = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    // Docker drops comment lines, also between continuation lines.
    if (line.startsWith('#') || (!line && !current)) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1).trim()} `;
      continue;
    }
    current += line;
    const m = /^(\w+)\s*(.*)$/s.exec(current.trim());
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
    current = '';
  }
  return out;
}

/** `A=b C="d e"` into `['A=b', 'C=d e']` (the forms this Dockerfile uses). */
function envPairs(args: string): string[] {
  const pairs: string[] = [];
  for (const m of args.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) pairs.push(`${m[1]}=${m[3] ?? m[2]}`);
  if (pairs.length === 0) throw new Error(`Dockerfile: ENV ${args}: only the KEY=value form is understood`);
  return pairs;
}

function execForm(op: string, args: string): string[] {
  try {
    const value = JSON.parse(args) as unknown;
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  } catch {
    // falls through to the error below
  }
  throw new Error(`Dockerfile: ${op} ${args}: only the JSON (exec) form is understood`);
}

/** The final stage of a Dockerfile (everything after its last FROM). */
export function parseFinalStage(text: string): DockerfileStage {
  const all = dockerfileInstructions(text);
  const start = all.map((i) => i.op).lastIndexOf('FROM');
  if (start < 0) throw new Error('Dockerfile: no FROM line');
  const stage: DockerfileStage = { from: all[start].args.split(/\s+/)[0], env: [], copies: [], runs: [] };
  for (const { op, args } of all.slice(start + 1)) {
    if (op === 'USER') stage.user = args;
    else if (op === 'WORKDIR') stage.workdir = args;
    else if (op === 'ENV') {
      for (const pair of envPairs(args)) {
        const key = pair.split('=')[0];
        stage.env = [...stage.env.filter((e) => !e.startsWith(`${key}=`)), pair];
      }
    } else if (op === 'ENTRYPOINT') stage.entrypoint = execForm(op, args);
    else if (op === 'CMD') stage.cmd = execForm(op, args);
    else if (op === 'RUN') stage.runs.push(args);
    else if (op === 'COPY') {
      const words = args.split(/\s+/);
      const from = words.find((w) => w.startsWith('--from='))?.slice('--from='.length);
      const rest = words.filter((w) => !w.startsWith('--'));
      stage.copies.push({ ...(from ? { from } : {}), sources: rest.slice(0, -1), dest: rest[rest.length - 1] });
    }
  }
  return stage;
}

/**
 * The image configuration a builder gives the final stage on top of a base whose environment is
 * `baseEnv`: the stage's ENV overrides the base's per key; `ENTRYPOINT []` means none.
 */
export function imageConfigOf(stage: DockerfileStage, baseEnv: readonly string[]): ImageRuntimeConfig {
  const keys = new Set(stage.env.map((e) => e.split('=')[0]));
  const config: ImageRuntimeConfig = { Env: [...baseEnv.filter((e) => !keys.has(e.split('=')[0])), ...stage.env] };
  if (stage.entrypoint && stage.entrypoint.length > 0) config.Entrypoint = stage.entrypoint;
  if (stage.cmd) config.Cmd = stage.cmd;
  if (stage.workdir) config.WorkingDir = stage.workdir;
  if (stage.user) config.User = stage.user;
  return config;
}

interface LockPackage {
  dev?: boolean;
  link?: boolean;
}

/**
 * The `node_modules/...` folders `npm prune --omit=dev` keeps and removes, from package-lock.json
 * (lockfile v2/v3: `packages`, dev-only entries marked `dev: true`).
 */
export function splitPackages(lock: { lockfileVersion?: number; packages?: Record<string, LockPackage> }): {
  production: string[];
  dev: string[];
} {
  if (!lock.packages || (lock.lockfileVersion ?? 0) < 2)
    throw new Error('package-lock.json: lockfileVersion 2 or 3 with `packages` is needed (npm 7 or later)');
  const production: string[] = [];
  const dev: string[] = [];
  for (const [key, pkg] of Object.entries(lock.packages)) {
    if (!key.startsWith('node_modules/')) continue;
    (pkg.dev ? dev : production).push(key);
  }
  return { production: production.sort(), dev: dev.sort() };
}

/** Whether `file` (relative to the project) lies inside one of the `dirs` (relative too). */
export function insideAny(file: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => file === d || file.startsWith(`${d}/`));
}

/** The archive's `config.json` for layers with these uncompressed sha256 digests, in order. */
export function layeredConfigDocument(config: ImageRuntimeConfig, layerDigests: string[], history: string[]): object {
  return {
    architecture: 'amd64',
    os: 'linux',
    created: '1970-01-01T00:00:00Z',
    config,
    rootfs: { type: 'layers', diff_ids: layerDigests.map((d) => `sha256:${d}`) },
    history: history.map((created_by) => ({ created: '1970-01-01T00:00:00Z', created_by })),
  };
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const REPRODUCIBLE = ['--sort=name', '--mtime=@0', '--numeric-owner'];

/** Where scripts/podman-image.sh keeps the stand-in base's root file system. */
export function baseRootfsDir(): string {
  const cache = process.env.GITOPS_IMAGE_CACHE ?? path.join(homedir(), '.cache', 'gitops', 'node-base');
  return path.join(cache, 'rootfs-bookworm');
}

/**
 * Left out of the base layer because the Dockerfile's openssl RUN removes them (`apt-get clean`,
 * `rm -rf /var/log/apt /var/log/dpkg.log`): the packages debootstrap downloaded and its logs.
 */
const BASE_EXCLUDES = ['./var/cache/apt/archives/*.deb', './var/log/apt', './var/log/dpkg.log'];

/**
 * The base layer, tarred once per root file system and cached beside it: [file, sha256]. A missing
 * root file system is made first by `scripts/podman-image.sh --rootfs` (debootstrap, about a minute).
 */
async function baseLayer(root: string, rootfs: string): Promise<[string, string]> {
  if (!existsSync(path.join(rootfs, 'usr', 'local', 'bin', 'node'))) {
    await run('bash', [path.join(root, 'scripts', 'podman-image.sh'), '--rootfs'], { maxBuffer: 1 << 24 }).catch(
      (err: { stderr?: string; message: string }) => {
        throw new Error(
          `${rootfs}: the stand-in base for node:24-bookworm-slim is missing and scripts/podman-image.sh --rootfs ` +
            `could not make it (it needs root, Debian's debootstrap and npm; .ci/run installs them): ${err.stderr?.trim() || err.message}`,
        );
      },
    );
  }
  // The stamp also names this function's own choices, so changing them re-tars the base.
  const stamp = `${(await stat(path.join(rootfs, 'usr', 'local', 'bin', 'node'))).mtimeMs} ${BASE_EXCLUDES.join(' ')}`;
  const file = `${rootfs}.layer.tar`;
  const meta = `${file}.json`;
  const cached = await readFile(meta, 'utf8').then(
    (t) => JSON.parse(t) as { stamp: string; sha256: string },
    () => undefined,
  );
  if (cached?.stamp === stamp && existsSync(file)) return [file, cached.sha256];
  const tmp = `${file}.tmp-${process.pid}`;
  await run('tar', [
    '-C',
    rootfs,
    ...REPRODUCIBLE,
    '--anchored',
    ...BASE_EXCLUDES.map((e) => `--exclude=${e}`),
    '-cf',
    tmp,
    '.',
  ]);
  const sha = await sha256File(tmp);
  await rename(tmp, file);
  await writeFile(meta, JSON.stringify({ stamp, sha256: sha }));
  return [file, sha];
}

/** The `apt-get install openssl` layer from this machine's installed packages. */
async function opensslLayer(work: string, out: string): Promise<void> {
  const listed: string[] = [];
  for (const pkg of OPENSSL_PACKAGES) {
    const { stdout } = await run('dpkg', ['-L', pkg]).catch(() => {
      throw new Error(`dpkg -L ${pkg}: the package is not installed; apt-get install -y ${OPENSSL_PACKAGES.join(' ')}`);
    });
    listed.push(...stdout.split('\n').filter((p) => p.startsWith('/') && p !== '/.'));
  }
  // Only what exists (dpkg lists diverted and excluded docs too), parents before children.
  const present: string[] = [];
  for (const p of [...new Set(listed)].sort())
    if (
      await lstat(p).then(
        () => true,
        () => false,
      )
    )
      present.push(p.slice(1));
  // The package makes /etc/ssl/private 0700; a machine's ssl-cert package widens it to 0710.
  const own = present.filter((p) => p !== PRIVATE_DIR);
  await run('tar', ['-C', '/', ...REPRODUCIBLE, '--owner=0', '--group=0', '--no-recursion', '-cf', out, ...own]);
  if (own.length < present.length) {
    await mkdir(path.join(work, PRIVATE_DIR), { recursive: true, mode: 0o700 });
    await chmod(path.join(work, PRIVATE_DIR), 0o700);
    await run('tar', [
      '-C',
      work,
      ...REPRODUCIBLE,
      '--owner=0',
      '--group=0',
      '--no-recursion',
      '-rf',
      out,
      PRIVATE_DIR,
    ]);
  }
}

/** The app layer: the COPY lines and the final RUN of the Dockerfile (see the module comment). */
async function appLayer(root: string, work: string, out: string): Promise<void> {
  const lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as Parameters<
    typeof splitPackages
  >[0];
  const { production, dev } = splitPackages(lock);
  for (const p of production) {
    if (!existsSync(path.join(root, p))) throw new Error(`${p}: missing from node_modules; run npm ci`);
  }
  const excludes = [
    '--anchored',
    ...dev.map((d) => `--exclude=${d}`),
    '--exclude=node_modules/@types',
    // Tools' caches (swc, babel) are no part of an installed tree.
    '--exclude=node_modules/.cache',
    '--exclude=*.d.ts',
    '--exclude=*.d.mts',
    '--exclude=*.d.cts',
    '--exclude=*.map',
  ];
  // npm prune also drops the .bin links of the packages it removes.
  const binDir = path.join(root, 'node_modules', '.bin');
  for (const name of await readdir(binDir).catch(() => [] as string[])) {
    const target = path.relative(root, path.resolve(binDir, await readlink(path.join(binDir, name))));
    if (!insideAny(target, production)) excludes.push(`--exclude=node_modules/.bin/${name}`);
  }
  for (const bin of ['gitops-server.js', 'gitops-agent.js']) {
    if (!existsSync(path.join(root, 'dist', 'bin', bin)))
      throw new Error(`dist/bin/${bin}: missing; run npm run build`);
  }

  // What RUN and WORKDIR make, with its owners: staged as real files, then tarred first.
  const stage = path.join(work, 'stage');
  for (const dir of ['app/dist', 'usr/local/bin', 'var/lib/gitops-server', 'var/lib/gitops-agent'])
    await mkdir(path.join(stage, dir), { recursive: true });
  for (const prog of ['gitops-server', 'gitops-agent'])
    await symlink(`/app/dist/bin/${prog}.js`, path.join(stage, 'usr/local/bin', prog));
  for (const dir of ['var/lib/gitops-server', 'var/lib/gitops-agent']) await chown(path.join(stage, dir), 1000, 1000);
  await run('tar', [
    '-C',
    stage,
    ...REPRODUCIBLE,
    '--no-recursion',
    '-cf',
    out,
    'app',
    'app/dist',
    'usr',
    'usr/local',
    'usr/local/bin',
    'usr/local/bin/gitops-agent',
    'usr/local/bin/gitops-server',
    'var',
    'var/lib',
    'var/lib/gitops-agent',
    'var/lib/gitops-server',
  ]);
  // The copied files, owned by root as COPY makes them. dist/bin holds only the two CLIs, which the
  // Dockerfile's chmod makes executable.
  const copy = ['-C', root, ...REPRODUCIBLE, '--owner=0', '--group=0', ...excludes, '--transform=s,^,app/,S'];
  await run('tar', [...copy, '-rf', out, 'package.json', 'dist/src', 'node_modules']);
  await run('tar', [...copy, '--mode=0755', '-rf', out, 'dist/bin']);
}

export interface ProductImage {
  /** The docker-archive tarball (for `ctr images import`). */
  file: string;
  ref: string;
  config: ImageRuntimeConfig;
  /** Milliseconds the assembly took (the cached base layer excluded after the first time). */
  assemblyMs: number;
}

/**
 * Writes the product image for `root` (the project, built: dist/ and node_modules present) as a
 * docker-archive to `outFile`, tagged `ref`.
 */
export async function writeProductImage(root: string, outFile: string, ref = PRODUCT_IMAGE): Promise<ProductImage> {
  const started = Date.now();
  const stage = parseFinalStage(await readFile(path.join(root, 'Dockerfile'), 'utf8'));
  const config = imageConfigOf(stage, BASE_ENV);
  const [base, baseSha] = await baseLayer(root, baseRootfsDir());
  const work = await mkdtemp(path.join(path.dirname(outFile), '.product-image-'));
  try {
    const dir = path.join(work, 'image');
    await mkdir(dir);
    await symlink(base, path.join(dir, 'base.tar'));
    await opensslLayer(work, path.join(dir, 'openssl.tar'));
    await appLayer(root, work, path.join(dir, 'app.tar'));
    const digests = [
      baseSha,
      await sha256File(path.join(dir, 'openssl.tar')),
      await sha256File(path.join(dir, 'app.tar')),
    ];
    const history = [
      `FROM ${stage.from} (stand-in base of scripts/podman-image.sh)`,
      `openssl from this machine's ${OPENSSL_PACKAGES.join(', ')}`,
      'app: e2e/harness/product-image.ts',
    ];
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(layeredConfigDocument(config, digests, history)));
    await writeFile(
      path.join(dir, 'manifest.json'),
      JSON.stringify([{ Config: 'config.json', RepoTags: [ref], Layers: ['base.tar', 'openssl.tar', 'app.tar'] }]),
    );
    // -h: the cached base layer goes in through its symlink.
    await run('tar', [
      '-C',
      dir,
      '-h',
      ...REPRODUCIBLE,
      '--owner=0',
      '--group=0',
      '-cf',
      outFile,
      'manifest.json',
      'config.json',
      'base.tar',
      'openssl.tar',
      'app.tar',
    ]);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { file: outFile, ref, config, assemblyMs: Date.now() - started };
}
