/**
 * Issue 14, item 11: with `--log-format text`, strings an agent sends (here its version in hello)
 * are written escaped, so an agent cannot forge a log line or send terminal escapes to whoever
 * tails the log. Against the real server process.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from '@jest/globals';
import { textLogField, useTenantServer } from '../harness/server-process.js';
import { waitFor } from '../harness/wait.js';

// Short enough that the hub logs all of it (it cuts agent versions at 64 characters).
const FORGED = '2026-01-01T00:00:00Z ERROR forged';
const HOSTILE_VERSION = `1.0\n${FORGED}\u001b[2J\u0007`;

const tenant = useTenantServer({ agents: [{ name: 'agent1' }], serverArgs: ['--log-format', 'text'] });

describe('text logs with hostile agent strings', () => {
  it('writes an agent version with a newline and terminal escapes as one escaped line', async () => {
    const ts = tenant();
    const client = await ts.connect('agent1', { agentVersion: HOSTILE_VERSION });
    await client.next('desired');

    const text = await waitFor(
      async () => {
        const t = await readFile(ts.server.logPath, 'utf8');
        return t.includes(' agent hello ') ? t : undefined;
      },
      10_000,
      'the agent hello line',
    );
    const lines = text.split('\n');
    const hello = lines.find((l) => l.includes(' agent hello '))!;
    expect(textLogField(hello, 'agentVersion')).toBe(HOSTILE_VERSION);
    expect(lines.some((l) => l.startsWith(FORGED))).toBe(false);
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f]/);
    expect(ts.alive()).toBe(true);
  });
});
