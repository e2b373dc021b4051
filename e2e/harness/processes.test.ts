// ProcessGroup: orderly stop in reverse order, and nothing left behind when the owner dies by
// SIGKILL (the watchdog's job). The SIGKILL case runs the built module (dist/, which `npm test`
// builds) in a child Node process, since jest's own process must not be killed.
import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessGroup } from './processes.js';
import { waitFor } from './wait.js';

const IDLE = 'setInterval(() => {}, 1000); process.on("SIGTERM", () => process.exit(0));';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('ProcessGroup', () => {
  it('stops its processes in reverse start order, waiting for each, then deletes its folder', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'gitops-order-'));
    const order = join(elsewhere, 'order');
    try {
      const group = await ProcessGroup.create({ handleSignals: false });
      const script = `${IDLE} process.on("exit", () => require("fs").appendFileSync(${JSON.stringify(order)}, process.argv[1] + "\\n"));`;
      const first = group.start('first', process.execPath, ['-e', script, 'first', group.dir]);
      const second = group.start('second', process.execPath, ['-e', script, 'second', group.dir]);
      await new Promise((r) => setTimeout(r, 500)); // let both install their SIGTERM handlers
      await group.dispose();
      expect(await readFile(order, 'utf8')).toBe('second\nfirst\n');
      expect(first.exit()).toEqual({ code: 0, signal: null });
      expect(second.exit()).toEqual({ code: 0, signal: null });
      expect(existsSync(group.dir)).toBe(false);
    } finally {
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it('escalates to SIGKILL when a process ignores SIGTERM', async () => {
    const group = await ProcessGroup.create({ handleSignals: false });
    const stubborn = group.start('stubborn', process.execPath, [
      '-e',
      'process.on("SIGTERM", () => {}); setInterval(() => {}, 1000);',
      group.dir,
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    await group.dispose(500);
    expect(stubborn.exit()).toEqual({ code: null, signal: 'SIGKILL' });
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('leaves no process or folder behind when its owner is killed with SIGKILL', async () => {
    const dist = new URL('../../dist/e2e/harness/processes.js', import.meta.url).href;
    const owner = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      import { ProcessGroup } from ${JSON.stringify(dist)};
      const g = await ProcessGroup.create();
      const a = g.start('a', process.execPath, ['-e', 'setInterval(() => {}, 1000)', g.dir]);
      const b = g.start('b', process.execPath, ['-e', 'setInterval(() => {}, 1000)', g.dir]);
      console.log(JSON.stringify({ dir: g.dir, pids: [a.pid, b.pid] }));
      setInterval(() => {}, 1000);
    `,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    owner.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const started = await waitFor(
      () => (out.includes('\n') ? (JSON.parse(out) as { dir: string; pids: number[] }) : undefined),
      10_000,
      'the owner to start its processes',
    );
    expect(started.pids.every(alive)).toBe(true);
    owner.kill('SIGKILL');
    await waitFor(() => !existsSync(started.dir) && !started.pids.some(alive), 5000, 'the watchdog to clean up');
  });

  it('runs the cleanup script after the processes are gone, also when its owner is killed with SIGKILL', async () => {
    const dist = new URL('../../dist/e2e/harness/processes.js', import.meta.url).href;
    const outside = await mkdtemp(join(tmpdir(), 'gitops-cleanup-marker-'));
    const marker = join(outside, 'left-behind');
    const owner = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
      import { writeFileSync } from 'node:fs';
      import { ProcessGroup } from ${JSON.stringify(dist)};
      const g = await ProcessGroup.create();
      // Something outside the folder that only the cleanup script removes, after the process died.
      writeFileSync(${JSON.stringify(marker)}, '');
      const a = g.start('a', process.execPath, ['-e', 'setInterval(() => {}, 1000)', g.dir]);
      // A killed process may stay a zombie (empty cmdline) until it is reaped: that counts as gone.
      await g.setCleanup('grep -q . /proc/' + a.pid + '/cmdline 2>/dev/null && exit 1; rm ' + ${JSON.stringify(marker)} + '\\n');
      console.log(JSON.stringify({ dir: g.dir, pid: a.pid }));
      setInterval(() => {}, 1000);
    `,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let out = '';
    owner.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    try {
      const started = await waitFor(
        () => (out.includes('\n') ? (JSON.parse(out) as { dir: string; pid: number }) : undefined),
        10_000,
        'the owner to start',
      );
      expect(existsSync(marker)).toBe(true);
      owner.kill('SIGKILL');
      await waitFor(() => !existsSync(started.dir) && !alive(started.pid), 5000, 'the watchdog to clean up');
      expect(existsSync(marker)).toBe(false);
    } finally {
      owner.kill('SIGKILL');
      await rm(outside, { recursive: true, force: true });
    }
  });
});
