// Runs the built CLIs with plain Node: jest's module handling can hide ESM/CJS interop errors
// (a named import from a CommonJS package passes here but crashes in Node), so this is the check.
import { describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

describe.each(['gitops-server', 'gitops-agent'])('dist/bin/%s.js', (name) => {
  const script = new URL(`../dist/bin/${name}.js`, import.meta.url).pathname;

  it('is built (run `npm run build` first; `npm test` does)', () => {
    expect(existsSync(script)).toBe(true);
  });

  it('prints its version and help with plain node', async () => {
    const version = await run(process.execPath, [script, '--version']);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    const help = await run(process.execPath, [script, '--help']);
    expect(help.stdout).toContain(`Usage: ${name}`);
  });
});
