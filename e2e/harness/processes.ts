/**
 * Child processes that must never outlive the harness that started them.
 *
 * A `ProcessGroup` owns one temporary folder and the processes started in it. Each process writes
 * its stdout and stderr to `<dir>/<name>.log` (a file, not a pipe: output survives the parent and
 * nothing has to drain it). Processes are stopped in reverse start order, SIGTERM first and
 * SIGKILL after a grace period, waiting for each exit.
 *
 * Three layers make sure nothing is left behind:
 * 1. `dispose()`: the orderly stop.
 * 2. `exit` (and, unless the host handles them itself, SIGINT/SIGTERM) handlers in this process
 *    that SIGKILL the children synchronously and delete the folder.
 * 3. A detached watchdog process (its own session, so a terminal's Ctrl-C does not reach it) that
 *    polls this process's pid; when this process is gone (even by SIGKILL, where no handler runs)
 *    it kills the pids listed in `<dir>/pids` whose command line names the folder, and deletes the
 *    folder. It exits by itself once the folder is gone.
 *
 * A group whose processes leave more than a folder behind (the test node's mounts, cgroups and
 * network devices) sets a cleanup script with {@link ProcessGroup.setCleanup}: `<dir>/cleanup.sh`,
 * run by bash after the processes are gone and before the folder is deleted, in all three layers.
 * One script for the orderly stop and the last resorts, so they cannot drift apart.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a managed process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A child process started by a {@link ProcessGroup}. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  /** File that receives the process's stdout and stderr. */
  readonly logPath: string;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** The exit, once it happened. */
  exit(): ProcessExit | undefined;
  /** The last `lines` lines of its log, for error messages. */
  logTail(lines?: number): Promise<string>;
}

export interface ProcessGroupOptions {
  /** Prefix of the temporary folder name. */
  prefix?: string;
  /**
   * Install SIGINT/SIGTERM handlers that kill the children before this process dies (default
   * true). Programs that stop gracefully on those signals themselves pass false.
   */
  handleSignals?: boolean;
}

// Runs as `node -e WATCHDOG <parentPid> <dir>` (CommonJS). Only pids whose /proc cmdline names the
// folder are killed, so a recycled pid of an unrelated process is left alone.
const WATCHDOG = String.raw`
const fs = require('fs');
const parent = Number(process.argv[1]);
const dir = process.argv[2];
const alive = (pid) => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
const owned = (pid) => {
  if (!alive(pid)) return false;
  try { return fs.readFileSync('/proc/' + pid + '/cmdline', 'utf8').includes(dir); } catch { return process.platform !== 'linux'; }
};
const pause = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
setInterval(() => {
  if (!fs.existsSync(dir)) process.exit(0);
  if (alive(parent)) return;
  let pids = [];
  try { pids = fs.readFileSync(dir + '/pids', 'utf8').split('\n').filter(Boolean).map(Number); } catch {}
  for (const pid of pids) if (owned(pid)) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  const deadline = Date.now() + 5000;
  while (pids.some(owned) && Date.now() < deadline) pause(50);
  if (fs.existsSync(dir + '/cleanup.sh')) {
    try { require('child_process').spawnSync('bash', [dir + '/cleanup.sh'], { stdio: 'ignore', timeout: 60000 }); } catch {}
  }
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(0);
}, 250);
`;

/** A temporary folder plus the processes started in it; see the module comment. */
export class ProcessGroup {
  readonly dir: string;
  private readonly procs: Array<ManagedProcess & { child: ChildProcess }> = [];
  private readonly onExit = (): void => this.killNow();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.killNow();
    // Restore the default behaviour (die by the signal) when nobody else handles it.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  private readonly handleSignals: boolean;
  private disposed = false;

  private constructor(dir: string, handleSignals: boolean) {
    this.dir = dir;
    this.handleSignals = handleSignals;
  }

  /** Creates the folder, starts the watchdog and installs the exit handlers. */
  static async create(options: ProcessGroupOptions = {}): Promise<ProcessGroup> {
    const dir = await mkdtemp(join(tmpdir(), options.prefix ?? 'gitops-procs-'));
    const group = new ProcessGroup(dir, options.handleSignals ?? true);
    writeFileSync(join(dir, 'pids'), '');
    const watchdog = spawn(process.execPath, ['-e', WATCHDOG, String(process.pid), dir], {
      detached: true,
      stdio: 'ignore',
    });
    watchdog.unref();
    process.on('exit', group.onExit);
    if (group.handleSignals) {
      process.once('SIGINT', group.onSignal);
      process.once('SIGTERM', group.onSignal);
    }
    return group;
  }

  /**
   * Starts `command` with its output going to `<dir>/<name>.log`. Its command line must name the
   * group's folder (a data dir or a config path) for the watchdog to recognise it.
   */
  start(
    name: string,
    command: string,
    args: string[],
    options: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
  ): ManagedProcess {
    if (this.disposed) throw new Error(`${name}: process group ${this.dir} is already disposed`);
    const logPath = join(this.dir, `${name}.log`);
    const fd = openSync(logPath, 'a');
    let child: ChildProcess;
    try {
      child = spawn(command, args, {
        stdio: ['ignore', fd, fd],
        env: options.env ?? process.env,
        cwd: options.cwd ?? this.dir,
      });
    } finally {
      closeSync(fd);
    }
    let exitInfo: ProcessExit | undefined;
    const exited = new Promise<ProcessExit>((resolve) => {
      child.once('exit', (code, signal) => {
        exitInfo = { code, signal };
        resolve(exitInfo);
      });
      child.once('error', () => {
        exitInfo ??= { code: -1, signal: null };
        resolve(exitInfo);
      });
    });
    const proc = {
      name,
      pid: child.pid ?? -1,
      logPath,
      exited,
      child,
      exit: () => exitInfo,
      logTail: (lines = 30) => tailOf(logPath, lines),
    };
    this.procs.push(proc);
    if (child.pid !== undefined) writeFileSync(join(this.dir, 'pids'), this.procs.map((p) => p.pid).join('\n') + '\n');
    return proc;
  }

  /** Stops one process: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(proc: ManagedProcess, graceMs = 3000): Promise<ProcessExit> {
    const p = this.procs.find((x) => x === proc);
    if (!p) throw new Error(`${proc.name}: not a member of process group ${this.dir}`);
    if (p.exit()) return p.exited;
    p.child.kill('SIGTERM');
    // Cancel the grace timer once the process exits, or it keeps the event loop alive for nothing.
    const grace = new AbortController();
    const done = await Promise.race([
      p.exited,
      sleep(graceMs, undefined, { signal: grace.signal }).then(
        () => undefined,
        () => undefined,
      ),
    ]);
    grace.abort();
    if (done) return done;
    p.child.kill('SIGKILL');
    return p.exited;
  }

  /**
   * Sets the bash script that removes what the processes leave outside plain files (see the
   * module comment). It must be idempotent: it may run after a partial start, and twice.
   */
  async setCleanup(script: string): Promise<void> {
    await writeFile(this.cleanupPath, script, { mode: 0o700 });
  }

  /** Runs the cleanup script, if any; its failure is returned as text (the folder goes anyway). */
  async runCleanup(): Promise<string | undefined> {
    if (!existsSync(this.cleanupPath)) return undefined;
    return new Promise((resolve) => {
      execFile('bash', [this.cleanupPath], { timeout: 60_000 }, (err, _stdout, stderr) => {
        resolve(err ? `${this.cleanupPath}: ${err.message}${stderr ? `\n${stderr.trim()}` : ''}` : undefined);
      });
    });
  }

  /**
   * Stops every process in reverse start order (or, with `parallel`, all at once), waits for each,
   * runs the cleanup script and deletes the folder. Rejects if the cleanup script failed.
   */
  async dispose(graceMs = 3000, parallel = false): Promise<void> {
    if (this.disposed) return;
    if (parallel) await Promise.all(this.procs.map((p) => this.stop(p, graceMs)));
    else for (const p of [...this.procs].reverse()) await this.stop(p, graceMs);
    this.disposed = true;
    this.removeHandlers();
    const failure = await this.runCleanup();
    await rm(this.dir, { recursive: true, force: true });
    if (failure) throw new Error(failure);
  }

  private get cleanupPath(): string {
    return join(this.dir, 'cleanup.sh');
  }

  private removeHandlers(): void {
    process.removeListener('exit', this.onExit);
    if (this.handleSignals) {
      process.removeListener('SIGINT', this.onSignal);
      process.removeListener('SIGTERM', this.onSignal);
    }
  }

  /** Synchronous last resort, for `exit` and signal handlers where nothing async runs. */
  private killNow(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.removeHandlers();
    for (const p of this.procs) if (!p.exit()) p.child.kill('SIGKILL');
    if (existsSync(this.cleanupPath)) spawnSync('bash', [this.cleanupPath], { stdio: 'ignore', timeout: 60_000 });
    // The killed processes may still hold files open for a moment; rm copes on Linux.
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function tailOf(path: string, lines: number): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    return text
      .split('\n')
      .slice(-lines - 1)
      .join('\n')
      .trimEnd();
  } catch {
    return '(no log)';
  }
}
