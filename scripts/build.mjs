#!/usr/bin/env node
// @ts-check
/**
 * `npm run build` and `npm run typecheck`: an incremental `tsc --build` of one tsconfig, plus what
 * tsc's incremental mode does not do by itself, so that dist/ is always what a clean build of the
 * current sources would give:
 *
 * - Stale outputs. A source deleted or renamed leaves its .js and .js.map in dist/, where a test
 *   importing dist/... would still find the old module. Emitted files (.js, .map, .d.ts,
 *   .tsbuildinfo) in outDir that no current source produces are deleted first.
 * - Lost outputs. tsc trusts its .tsbuildinfo (in .cache/tsc/, outside dist/, so neither the image
 *   nor the npm package carries it) and re-emits nothing after `rm -rf dist` or a file deleted by
 *   hand. When an output of a source that was built last time is missing, the .tsbuildinfo is
 *   dropped and everything is compiled.
 * - Content, not modification times. `tsc --build` looks no further when every source is older
 *   than its .tsbuildinfo, so a file restored with an old mtime (cp -p, tar, rsync -a) or new
 *   dependency types (npm install) would go unnoticed. A SHA-256 of the sources and of
 *   node_modules/.package-lock.json is kept beside the .tsbuildinfo; when it differs, the
 *   .tsbuildinfo's mtime is set back so that tsc compares contents and recompiles what changed.
 *
 * Usage: node scripts/build.mjs [--verbose] [CONFIG]   (CONFIG: tsconfig.build.json by default; a
 * config with noEmit only type-checks.) --verbose says what it decided and why tsc (re)builds.
 * The exit status is tsc's: 0, or non-zero after errors (outputs are still written, as with tsc).
 */
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** npm rewrites it on every install that changes node_modules: the versions of all dependencies. */
const INSTALLED = join(ROOT, 'node_modules', '.package-lock.json');
/**
 * What tsc writes into outDir. Not .json: JSON modules copied by resolveJsonModule belong to no
 * root source, and one deleted here would never come back.
 */
const EMITTED = /\.(?:[cm]?js|map|d\.[cm]?ts|tsbuildinfo)$/;

const args = process.argv.slice(2);
const verbose = args.includes('--verbose');
const configPath = resolve(ROOT, args.find((a) => !a.startsWith('--')) ?? 'tsconfig.build.json');
const pretty = Boolean(ts.sys.writeOutputIsTTY?.());
/** @type {ts.FormatDiagnosticsHost} */
const formatHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
const rel = (/** @type {string} */ p) => relative(ROOT, p) || '.';
const say = (/** @type {string} */ line) => void process.stderr.write(`build: ${line}\n`);
const sayVerbose = (/** @type {string} */ line) => verbose && say(line);

/** @param {ts.Diagnostic} d */
function reportDiagnostic(d) {
  ts.sys.write(pretty ? ts.formatDiagnosticsWithColorAndContext([d], formatHost) : ts.formatDiagnostic(d, formatHost));
}

/** The config as tsc reads it (root files, options with absolute paths); exits on a broken one. */
function parseConfig() {
  const parsed = ts.getParsedCommandLineOfConfigFile(configPath, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      reportDiagnostic(d);
      process.exit(ts.ExitStatus.InvalidProject_OutputsSkipped);
    },
  });
  if (!parsed) process.exit(ts.ExitStatus.InvalidProject_OutputsSkipped);
  for (const d of parsed.errors) reportDiagnostic(d);
  if (parsed.errors.length > 0) process.exit(ts.ExitStatus.InvalidProject_OutputsSkipped);
  return parsed;
}

/** @param {string} dir @returns {string[]} every file below dir (none when it does not exist) */
function filesUnder(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}

/** @param {string} dir deletes the empty folders below dir, deepest first */
function removeEmptyDirs(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const sub = join(dir, e.name);
    removeEmptyDirs(sub);
    if (readdirSync(sub).length === 0) rmdirSync(sub);
  }
}

/** @param {string} outDir @param {Set<string>} expected deletes emitted files no source produces */
function pruneStale(outDir, expected) {
  const stale = filesUnder(outDir).filter((f) => EMITTED.test(f) && !expected.has(f));
  for (const f of stale) {
    sayVerbose(`deleting ${rel(f)}: no source in ${rel(configPath)} produces it`);
    rmSync(f, { force: true });
  }
  if (stale.length > 0) removeEmptyDirs(outDir);
}

/**
 * @typedef {{ digest: string, sources: string[] }} Inputs what the last build compiled
 * @param {readonly string[]} sources @returns {Inputs}
 */
function currentInputs(sources) {
  const hash = createHash('sha256');
  const names = sources.map(rel).sort();
  for (const name of names)
    hash
      .update(`${name}\0`)
      .update(readFileSync(join(ROOT, name)))
      .update('\0');
  hash.update(existsSync(INSTALLED) ? readFileSync(INSTALLED) : '');
  return { digest: hash.digest('hex'), sources: names };
}

/** @param {string} file @returns {Inputs | undefined} */
function readInputs(file) {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8'));
    return typeof v?.digest === 'string' && Array.isArray(v.sources) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * @typedef {{ source: string, output: string }} Output a file tsc emits for a root source
 * @param {boolean} haveBuildInfo @param {Inputs | undefined} last @param {Inputs} inputs @param {Output[]} outputs
 * @returns {{ full: boolean, compareContents: boolean, why?: string, inputs: Inputs }} whether to
 *   drop the .tsbuildinfo (compile everything) or to make tsc look at contents
 */
function planBuild(haveBuildInfo, last, inputs, outputs) {
  if (!haveBuildInfo || !last) return { full: true, compareContents: false, inputs };
  // New sources are tsc's to emit; a missing output of one built last time is one tsc will not.
  const lost = outputs.filter((o) => last.sources.includes(o.source) && !existsSync(o.output));
  if (lost.length > 0) {
    const why = `${rel(lost[0].output)}${lost.length > 1 ? ` and ${lost.length - 1} more` : ''} missing: compiling everything`;
    return { full: true, compareContents: false, why, inputs };
  }
  if (last.digest === inputs.digest) return { full: false, compareContents: false, inputs };
  return {
    full: false,
    compareContents: true,
    why: 'sources or dependencies differ from the last build: tsc compares their contents',
    inputs,
  };
}

/** @returns {ts.ExitStatus} tsc --build's status */
function build() {
  const host = ts.createSolutionBuilderHost(
    ts.sys,
    undefined,
    reportDiagnostic,
    ts.createBuilderStatusReporter(ts.sys, pretty),
    (errors) => {
      if (errors > 0) ts.sys.write(`\nFound ${errors} error${errors === 1 ? '' : 's'}.\n`);
    },
  );
  return ts.createSolutionBuilder(host, [configPath], { verbose }).build();
}

function main() {
  const parsed = parseConfig();
  const buildInfo = ts.getTsBuildInfoEmitOutputFilePath(parsed.options);
  if (!buildInfo) throw new Error(`${rel(configPath)}: set incremental and tsBuildInfoFile`);
  const inputsFile = `${buildInfo}.inputs.json`;
  const ignoreCase = !ts.sys.useCaseSensitiveFileNames;
  const outputs = parsed.options.noEmit
    ? []
    : parsed.fileNames.flatMap((source) =>
        ts.getOutputFileNames(parsed, source, ignoreCase).map((o) => ({ source: rel(source), output: resolve(o) })),
      );
  if (parsed.options.outDir && outputs.length > 0) {
    pruneStale(resolve(parsed.options.outDir), new Set([...outputs.map((o) => o.output), resolve(buildInfo)]));
  }
  const plan = planBuild(existsSync(buildInfo), readInputs(inputsFile), currentInputs(parsed.fileNames), outputs);
  if (plan.why) (plan.full ? say : sayVerbose)(plan.why);
  if (plan.full) rmSync(buildInfo, { force: true });
  else if (plan.compareContents) utimesSync(buildInfo, 0, 0);
  let status = build();
  // A safety net: tsc emitted less than the config says (outputs deleted while it ran, say).
  if (!plan.full && outputs.some((o) => !existsSync(o.output))) {
    say('outputs still missing: compiling everything');
    rmSync(buildInfo, { force: true });
    status = build();
  }
  if (existsSync(buildInfo) && outputs.every((o) => existsSync(o.output))) {
    mkdirSync(dirname(inputsFile), { recursive: true });
    writeFileSync(inputsFile, `${JSON.stringify(plan.inputs)}\n`);
  } else {
    rmSync(inputsFile, { force: true });
  }
  process.exitCode = status;
}

main();
