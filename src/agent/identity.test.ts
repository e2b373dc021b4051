import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { IDENTITY_FILE, persistentIdentity } from './identity.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'gitops-identity-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('persistentIdentity', () => {
  it('makes an identity once and gives the same one to a restarted process with the same state dir', async () => {
    const stateDir = path.join(dir, 'pod-a');
    const first = await persistentIdentity(stateDir, 'gitops-agent-7d9f-abc');
    expect(first.source).toBe('created');
    expect(first.identity).toMatch(/^gitops-agent-7d9f-abc_[0-9a-f]{8}$/);
    expect((await readFile(path.join(stateDir, IDENTITY_FILE), 'utf8')).trim()).toBe(first.identity);
    const again = await persistentIdentity(stateDir, 'gitops-agent-7d9f-abc');
    expect(again).toEqual({ identity: first.identity, source: 'reused' });
  });

  it('gives two replicas with two state dirs two identities, even with the same host name', async () => {
    const a = await persistentIdentity(path.join(dir, 'replica-1'), 'same-host');
    const b = await persistentIdentity(path.join(dir, 'replica-2'), 'same-host');
    expect(a.identity).not.toBe(b.identity);
  });

  it('replaces a damaged identity file with a new identity', async () => {
    const stateDir = path.join(dir, 'damaged');
    await persistentIdentity(stateDir, 'host');
    await writeFile(path.join(stateDir, IDENTITY_FILE), '\u0000 not a name \n');
    const made = await persistentIdentity(stateDir, 'host');
    expect(made.source).toBe('created');
    expect(made.identity).toMatch(/^host_[0-9a-f]{8}$/);
  });

  it('still yields an identity, marked unsaved, when the state dir is not writable', async () => {
    // Even root cannot create a state dir below a regular file.
    await writeFile(path.join(dir, 'readonly'), 'a file');
    const made = await persistentIdentity(path.join(dir, 'readonly', 'state'), 'host');
    expect(made.source).toBe('unsaved');
    expect(made.identity).toMatch(/^host_[0-9a-f]{8}$/);
  });
});
