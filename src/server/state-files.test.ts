import { describe, expect, it } from '@jest/globals';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureStateDir, judgeLooseStateDir, type StateDirFacts } from './state-files.js';

const DIR = '/var/lib/gitops-server';
/** uid/gid 1000 (the image's user), not the owner: what a Kubernetes volume gives. */
const asPod = (mode: number, uid = 0, gid = 1000, writable = true): StateDirFacts => ({
  mode: 0o040000 | mode,
  uid,
  gid,
  processUid: 1000,
  processGid: 1000,
  writable,
  chmodError: 'EPERM',
  mountPoint: false,
});

describe('judgeLooseStateDir', () => {
  it.each([
    [
      'fsGroup volume root:1000 2775',
      asPod(0o2775),
      { mode: '2775', owner: '0:1000', looseness: 'group-writable', why: 'not its owner' },
    ],
    [
      'root:1000 0770',
      asPod(0o770),
      { mode: '0770', owner: '0:1000', looseness: 'group-writable', why: 'not its owner' },
    ],
    [
      'root:1000 2770 fsGroup, no others',
      asPod(0o2770),
      { mode: '2770', owner: '0:1000', looseness: 'group-writable', why: 'not its owner' },
    ],
    [
      'own 0750 on a filesystem refusing chmod',
      { ...asPod(0o750, 1000, 1000), chmodError: 'EPERM' },
      { mode: '0750', owner: '1000:1000', looseness: 'readable by its group', why: 'chmod: EPERM' },
    ],
    [
      'own 0705 on a filesystem refusing chmod',
      { ...asPod(0o705, 1000, 1000), chmodError: 'EPERM' },
      { mode: '0705', owner: '1000:1000', looseness: 'readable by others', why: 'chmod: EPERM' },
    ],
    [
      'a mounted 0777 root:root volume (local-path, hostPath)',
      { ...asPod(0o777, 0, 0), mountPoint: true },
      { mode: '0777', owner: '0:0', looseness: 'writable by every user (a mounted volume)', why: 'not its owner' },
    ],
    [
      'a mounted 2777 root:1000 emptyDir with fsGroup',
      { ...asPod(0o2777), mountPoint: true },
      { mode: '2777', owner: '0:1000', looseness: 'writable by every user (a mounted volume)', why: 'not its owner' },
    ],
    [
      'a mounted fsGroup volume 2775',
      { ...asPod(0o2775), mountPoint: true },
      { mode: '2775', owner: '0:1000', looseness: 'group-writable', why: 'not its owner' },
    ],
    [
      '0700 of another user, writable (DAC override without FOWNER)',
      asPod(0o700, 2000, 2000),
      { mode: '0700', owner: '2000:2000', looseness: 'owned by another user', why: 'not its owner' },
    ],
  ])('accepts %s, saying how loose it is', (_name, facts, loose) => {
    expect(judgeLooseStateDir(DIR, facts)).toEqual({ ok: true, loose });
  });

  it.each([
    [
      'a plain 0777 root:root folder',
      asPod(0o777, 0, 0),
      'STATE_DIR_WORLD_WRITABLE',
      /\(0777, owner 0:0\) is writable by every user, and this process \(uid 1000\) cannot tighten it \(not its owner\): anyone could add an agent to its registry\. As its owner \(or root\) run `chmod o-w \/var\/lib\/gitops-server`/,
    ],
    [
      'a plain 1777 root:root folder (sticky, as /tmp)',
      asPod(0o1777, 0, 0),
      'STATE_DIR_WORLD_WRITABLE',
      /\(1777, owner 0:0\) is writable by every user/,
    ],
    ['a plain 2777 root:1000 folder', asPod(0o2777), 'STATE_DIR_WORLD_WRITABLE', /\(2777, owner 0:1000\)/],
    [
      'a mounted 0777 volume this process cannot write (read-only mount)',
      { ...asPod(0o777, 0, 0, false), mountPoint: true, chmodError: 'EROFS' },
      'STATE_DIR_NOT_WRITABLE',
      /\(0777, owner 0:0\) is not writable by this process .* \(chmod: EROFS\)/,
    ],
    [
      '0755 root:root',
      asPod(0o755, 0, 0, false),
      'STATE_DIR_NOT_WRITABLE',
      /\(0755, owner 0:0\) is not writable by this process \(uid 1000, gid 1000\), which cannot change its mode either \(not its owner\)\. As root run `chown 1000 \/var\/lib\/gitops-server` \(then it is made 0700\), or `chgrp 1000 \/var\/lib\/gitops-server && chmod 2770 \/var\/lib\/gitops-server`; in Kubernetes, set the pod's securityContext.fsGroup\./,
    ],
    [
      '2750 root:1000 (group may read only)',
      asPod(0o2750, 0, 1000, false),
      'STATE_DIR_NOT_WRITABLE',
      /\(2750, owner 0:1000\) is not writable/,
    ],
    ['0700 of another user', asPod(0o700, 0, 0, false), 'STATE_DIR_NOT_WRITABLE', /\(0700, owner 0:0\)/],
    [
      'own, on a read-only filesystem',
      { ...asPod(0o755, 1000, 1000, false), chmodError: 'EROFS' },
      'STATE_DIR_NOT_WRITABLE',
      /cannot change its mode either \(chmod: EROFS\)/,
    ],
  ])('refuses %s, naming mode, owner and the fix', (_name, facts, code, message) => {
    const verdict = judgeLooseStateDir(DIR, facts);
    expect(verdict.ok).toBe(false);
    if (verdict.ok) return;
    expect(verdict.error.code).toBe(code);
    expect(verdict.error.message).toMatch(new RegExp(`^${DIR}: the state dir `));
    expect(verdict.error.message).toMatch(message);
  });
});

describe('ensureStateDir', () => {
  it('creates a missing folder 0700 and tightens one this process owns', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'state-dir-'));
    try {
      const fresh = path.join(root, 'a', 'b');
      expect(await ensureStateDir(fresh)).toBeUndefined();
      expect((await stat(fresh)).mode & 0o7777).toBe(0o700);
      const loose = path.join(root, 'loose');
      await mkdir(loose, { mode: 0o777 });
      expect(await ensureStateDir(loose)).toBeUndefined();
      expect((await stat(loose)).mode & 0o7777).toBe(0o700);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
