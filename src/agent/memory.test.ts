import { describe, expect, it } from '@jest/globals';
import { limitYoungGeneration } from './memory.js';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

// The built module (`npm test` builds first): a child Node cannot load TypeScript here.
const memoryModule = fileURLToPath(new URL('../../dist/src/agent/memory.js', import.meta.url));

/** Runs a child Node that allocates like a sync and prints its young-generation size in MiB. */
function newSpaceMib(env: Record<string, string>, limit: boolean): number {
  const script = `
    import v8 from 'node:v8';
    ${limit ? `const { limitYoungGeneration } = await import(${JSON.stringify(memoryModule)}); limitYoungGeneration();` : ''}
    const keep = [];
    const text = JSON.stringify(Array.from({ length: 2000 }, (_, i) => ({ name: 'obj-' + i, data: 'x'.repeat(300) })));
    for (let i = 0; i < 100; i++) keep.push(JSON.parse(text)[i]);
    const s = v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space');
    console.log(s.space_size / 1048576);
  `;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, NODE_OPTIONS: '', ...env },
    encoding: 'utf8',
  });
  return Number(out.trim());
}

describe('limitYoungGeneration', () => {
  it('keeps the young generation at its initial size while a process allocates fast', () => {
    expect(newSpaceMib({}, false)).toBeGreaterThanOrEqual(8);
    expect(newSpaceMib({}, true)).toBeLessThanOrEqual(4);
  });
});

describe('limitYoungGeneration decision', () => {
  it('leaves young-generation sizes to an operator who set them, or who asked for growth', () => {
    expect(limitYoungGeneration({ NODE_OPTIONS: '--max-semi-space-size=8' }, [])).toBe(false);
    expect(limitYoungGeneration({}, ['--semi-space-growth-factor=2'])).toBe(false);
    expect(limitYoungGeneration({ GITOPS_AGENT_YOUNG_GEN_GROWTH: 'on' }, [])).toBe(false);
  });
});
