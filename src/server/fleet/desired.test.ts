import { describe, expect, it } from '@jest/globals';
import { desiredDigest } from './desired.js';

describe('desiredDigest', () => {
  it('gives equal files and config the same digest whatever their order, and any change a new one', () => {
    const cfg = {
      id: 'p',
      ref: {},
      defaultNamespace: 'default',
      paths: [{ glob: '**' }],
      reconcileTimeoutMs: 1,
      dryRunStrategy: 'none' as const,
      prune: true,
      pruneTimeoutMs: 1,
      prunePropagationPolicy: 'foreground' as const,
      inventoryPolicy: 'must_match' as const,
    };
    const a = { path: 'a.yaml', content: 'x' };
    const b = { path: 'b.yaml', content: 'y' };
    expect(desiredDigest([a, b], cfg)).toBe(desiredDigest([b, a], cfg));
    expect(desiredDigest([a, b], cfg)).not.toBe(desiredDigest([a, { ...b, content: 'z' }], cfg));
    expect(desiredDigest([a, b], cfg)).not.toBe(desiredDigest([a, b], { ...cfg, prune: false }));
    expect(desiredDigest([{ path: 'a', content: 'b\nc' }], cfg)).not.toBe(
      desiredDigest([{ path: 'a\nb', content: 'c' }], cfg),
    );
  });
});
