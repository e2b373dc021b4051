import { describe, expect, it } from '@jest/globals';
import {
  AGENT_LIMITS,
  MAX_AGENT_MESSAGE_BYTES,
  PROTOCOL_VERSION,
  decodeAgentMessage,
  decodeServerMessage,
  encodeMessage,
  allowedInVersion,
  fitReport,
  statusForVersion1,
  type DriftMessage,
  type HealthMessage,
  type StatusMessage,
} from './messages.js';

const sha = 'a'.repeat(40);
const status = (over: Partial<StatusMessage> = {}): StatusMessage => ({
  type: 'status',
  project: 'group/app',
  commit: sha,
  digest: 'd',
  result: 'applied',
  changes: [],
  errors: [],
  durationMs: 1,
  ...over,
});
const drift = (over: Partial<DriftMessage> = {}): DriftMessage => ({
  type: 'drift',
  project: 'group/app',
  commit: sha,
  object: 'ConfigMap/default/x',
  action: 'reverted',
  patch: [],
  at: new Date(0).toISOString(),
  ...over,
});
const hello = (applied: Record<string, { commit: string; digest: string }>, agentVersion = '1.0.0'): string =>
  JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, agentVersion, applied });
const decodes = (value: unknown): boolean =>
  decodeAgentMessage(typeof value === 'string' ? value : JSON.stringify(value)).ok;

describe('agent message limits', () => {
  it.each([
    ['a project key of 256 characters', status({ project: 'p'.repeat(AGENT_LIMITS.project + 1) })],
    ['an empty project key', status({ project: '' })],
    ['a 5 MiB project key', status({ project: 'p'.repeat(5 * 1024 * 1024) })],
    [
      'an object id over the limit',
      status({ changes: [{ id: 'x'.repeat(AGENT_LIMITS.objectId + 1), action: 'created' }] }),
    ],
    [
      'a change error over 4 KiB',
      status({ changes: [{ id: 'x', action: 'failed', error: 'e'.repeat(AGENT_LIMITS.message + 1) }] }),
    ],
    [
      'more changes than the limit',
      status({
        changes: Array.from({ length: AGENT_LIMITS.changes + 1 }, () => ({ id: 'x', action: 'unchanged' as const })),
      }),
    ],
    [
      'more errors than the limit',
      status({ errors: Array.from({ length: AGENT_LIMITS.errors + 1 }, () => ({ code: 'c', message: 'm' })) }),
    ],
    [
      'a problem message over 4 KiB',
      status({ errors: [{ code: 'c', message: 'm'.repeat(AGENT_LIMITS.message + 1) }] }),
    ],
    ['a digest over the limit', status({ digest: 'd'.repeat(AGENT_LIMITS.short + 1) })],
    ['a drift object over the limit', drift({ object: 'o'.repeat(AGENT_LIMITS.objectId + 1) })],
    [
      'a drift patch over the limit',
      drift({ patch: Array.from({ length: AGENT_LIMITS.patchOps + 1 }, () => ({ op: 'remove', path: '/a' })) }),
    ],
    ['a drift manager over the limit', drift({ manager: 'm'.repeat(AGENT_LIMITS.short + 1) })],
    ['a drift timestamp over the limit', drift({ at: 't'.repeat(AGENT_LIMITS.short + 1) })],
  ])('refuses %s', (_name, message) => {
    expect(decodes(message)).toBe(false);
  });

  it('accepts every field at its limit', () => {
    expect(
      decodes(
        status({
          project: 'p'.repeat(AGENT_LIMITS.project),
          digest: 'd'.repeat(AGENT_LIMITS.short),
          changes: [
            { id: 'x'.repeat(AGENT_LIMITS.objectId), action: 'failed', error: 'e'.repeat(AGENT_LIMITS.message) },
          ],
          errors: [
            {
              code: 'c'.repeat(AGENT_LIMITS.code),
              message: 'm'.repeat(AGENT_LIMITS.message),
              file: 'f'.repeat(AGENT_LIMITS.file),
              object: 'o'.repeat(AGENT_LIMITS.objectId),
            },
          ],
        }),
      ),
    ).toBe(true);
    expect(
      decodes(
        drift({
          object: 'o'.repeat(AGENT_LIMITS.objectId),
          manager: 'm'.repeat(AGENT_LIMITS.short),
          patch: [{ op: 'replace', path: '/spec/replicas', value: 3 }],
        }),
      ),
    ).toBe(true);
  });

  it('bounds hello: agent version, project keys and how many projects', () => {
    expect(decodes(hello({ 'group/app': { commit: sha, digest: 'd' } }))).toBe(true);
    expect(decodes(hello({}, 'v'.repeat(AGENT_LIMITS.short + 1)))).toBe(false);
    expect(decodes(hello({ ['p'.repeat(AGENT_LIMITS.project + 1)]: { commit: sha, digest: 'd' } }))).toBe(false);
    const many = Object.fromEntries(
      Array.from({ length: AGENT_LIMITS.appliedProjects + 1 }, (_, i) => [`g/p${i}`, { commit: sha, digest: 'd' }]),
    );
    expect(decodes(hello(many))).toBe(false);
  });

  it('never turns a __proto__ or constructor key into anything but data', () => {
    const decoded = decodeAgentMessage(
      `{"type":"hello","protocolVersion":${PROTOCOL_VERSION},"agentVersion":"x","applied":{"__proto__":{"commit":"${sha}","digest":"d"},"constructor":{"commit":"${sha}","digest":"d"}}}`,
    );
    expect(decoded.ok).toBe(true);
    if (decoded.ok && decoded.message.type === 'hello') {
      expect(Object.getPrototypeOf(decoded.message.applied)).toBe(Object.prototype);
      expect(Object.keys(decoded.message.applied).every((k) => k === 'constructor' || k === '__proto__')).toBe(true);
    }
  });

  it('keeps server messages unbounded by the agent limits (desired state is outbound)', () => {
    const error = { type: 'error', problems: [{ code: 'X', message: 'm'.repeat(AGENT_LIMITS.message * 2) }] };
    expect(decodeServerMessage(JSON.stringify(error)).ok).toBe(true);
  });
});

describe('fitReport', () => {
  const bytes = (m: unknown): number => Buffer.byteLength(encodeMessage(m as StatusMessage));

  it('returns a report within the limits as it is', () => {
    const small = status({ changes: [{ id: 'ConfigMap/default/a', action: 'created' }] });
    expect(fitReport(small)).toEqual(small);
  });

  it('cuts a status of 50,000 objects to one frame, failed ones first, with the totals', () => {
    const changes = Array.from({ length: 50_000 }, (_, i) => ({
      id: `ConfigMap/namespace-${i % 100}/object-with-a-long-name-${i}`,
      action: (i % 1000 === 999 ? 'failed' : 'configured') as 'failed' | 'configured',
      ...(i % 1000 === 999 ? { error: 'forbidden' } : {}),
    }));
    const big = status({ result: 'partial', changes });
    expect(bytes(big)).toBeGreaterThan(MAX_AGENT_MESSAGE_BYTES);
    const fitted = fitReport(big);
    expect(bytes(fitted)).toBeLessThanOrEqual(MAX_AGENT_MESSAGE_BYTES);
    expect(decodes(fitted)).toBe(true);
    expect(fitted.truncated).toEqual({ changes: 50_000, errors: 0, counts: { configured: 49_950, failed: 50 } });
    expect(fitted.changes.length).toBeGreaterThan(1000);
    expect(fitted.changes.length).toBeLessThanOrEqual(AGENT_LIMITS.changes);
    expect(fitted.changes.slice(0, 50).every((c) => c.action === 'failed')).toBe(true);
  });

  it('uses the byte budget exactly: one more change would not fit', () => {
    const changes = Array.from({ length: 3000 }, (_, i) => ({ id: `Secret/ns/s-${i}`, action: 'created' as const }));
    const max = 20_000;
    const fitted = fitReport(status({ changes }), max);
    expect(bytes(fitted)).toBeLessThanOrEqual(max);
    const oneMore = { ...fitted, changes: changes.slice(0, fitted.changes.length + 1) };
    expect(bytes(oneMore)).toBeGreaterThan(max);
  });

  it('caps the count at the schema limit even when the bytes would fit', () => {
    const changes = Array.from({ length: AGENT_LIMITS.changes + 5 }, () => ({ id: 'a', action: 'unchanged' as const }));
    const fitted = fitReport(status({ changes }));
    expect(fitted.changes).toHaveLength(AGENT_LIMITS.changes);
    expect(fitted.truncated?.changes).toBe(AGENT_LIMITS.changes + 5);
    expect(decodes(fitted)).toBe(true);
  });

  it('clips long strings so the report still decodes', () => {
    const fitted = fitReport(
      status({
        project: 'p'.repeat(300),
        errors: Array.from({ length: 150 }, () => ({
          code: 'c'.repeat(200),
          message: 'm'.repeat(10_000),
          file: 'f'.repeat(2000),
        })),
        changes: [{ id: 'x'.repeat(5000), action: 'failed', error: 'e'.repeat(10_000) }],
      }),
    );
    expect(decodes(fitted)).toBe(true);
    expect(fitted.errors).toHaveLength(AGENT_LIMITS.errors);
    expect(fitted.truncated?.errors).toBe(150);
  });

  it('cuts a drift patch that is too big and says how many operations it had', () => {
    const patch = Array.from({ length: 3000 }, (_, i) => ({
      op: 'replace',
      path: `/data/k${i}`,
      value: 'v'.repeat(1000),
    }));
    const fitted = fitReport(drift({ patch }));
    expect(bytes(fitted)).toBeLessThanOrEqual(MAX_AGENT_MESSAGE_BYTES);
    expect(decodes(fitted)).toBe(true);
    expect(fitted.truncated).toEqual({ patchOps: 3000 });
    expect(fitted.patch.length).toBeGreaterThan(0);
    expect(fitted.patch.length).toBeLessThan(3000);
  });
});

const health = (over: Partial<HealthMessage> = {}): HealthMessage => ({
  type: 'health',
  project: 'group/app',
  commit: sha,
  digest: 'd',
  result: 'degraded',
  objects: [
    { id: 'Deployment/default/web', state: 'failed', reason: 'CrashLoopBackOff', message: 'back-off restarting' },
    { id: 'ConfigMap/default/old', state: 'terminating', pruned: true },
  ],
  waitedMs: 1500,
  ...over,
});

describe('health (protocol 2)', () => {
  it('decodes a health frame at its limits and refuses one over any of them', () => {
    const at = health({
      project: 'p'.repeat(AGENT_LIMITS.project),
      digest: 'd'.repeat(AGENT_LIMITS.short),
      objects: [
        {
          id: 'x'.repeat(AGENT_LIMITS.objectId),
          state: 'failed',
          reason: 'r'.repeat(AGENT_LIMITS.short),
          message: 'm'.repeat(AGENT_LIMITS.message),
        },
      ],
      truncated: { objects: 20_000, counts: { failed: 1, current: 19_999 } },
    });
    expect(decodes(at)).toBe(true);
    const over: Array<[string, unknown]> = [
      ['a reason of 257', health({ objects: [{ id: 'a', state: 'failed', reason: 'r'.repeat(257) }] })],
      ['a message over 4 KiB', health({ objects: [{ id: 'a', state: 'failed', message: 'm'.repeat(4097) }] })],
      ['10,001 objects', health({ objects: Array.from({ length: 10_001 }, () => ({ id: 'a', state: 'current' })) })],
      ['an unknown state', { ...health(), objects: [{ id: 'a', state: 'ready' }] }],
      ['an unknown result', { ...health(), result: 'ok' }],
      ['a negative waitedMs', health({ waitedMs: -1 })],
      ['an extra field', { ...health(), extra: true }],
      ['a count of an unknown state', { ...health(), truncated: { objects: 1, counts: { ready: 1 } } }],
      ['pruned as a string', { ...health(), objects: [{ id: 'a', state: 'current', pruned: 'yes' }] }],
    ];
    for (const [name, value] of over) expect([name, decodes(value)]).toEqual([name, false]);
  });

  it('lets config carry the version (a v2 server to a v2 agent) and still decodes one without it', () => {
    const config = { type: 'config', settings: { drift: { mode: 'correct', ignore: [] } }, projects: [], errors: [] };
    expect(decodeServerMessage(JSON.stringify({ ...config, protocolVersion: 2 }))).toMatchObject({
      ok: true,
      message: { protocolVersion: 2 },
    });
    expect(decodeServerMessage(JSON.stringify(config))).toMatchObject({ ok: true });
    expect(decodeServerMessage(JSON.stringify({ ...config, protocolVersion: 'two' })).ok).toBe(false);
  });

  it('returns a health report within the limits as it is', () => {
    expect(fitReport(health())).toEqual(health());
  });

  it('cuts 30,000 objects to one frame: failed first, then in_progress, with totals per state', () => {
    const objects = Array.from({ length: 30_000 }, (_, i) => ({
      id: `Deployment/ns-${i % 50}/generated-object-${i}`,
      state: i % 10_000 === 7 ? ('failed' as const) : i % 1000 === 3 ? ('in_progress' as const) : ('current' as const),
      ...(i % 10_000 === 7 ? { reason: 'ImagePullBackOff', message: 'Back-off pulling image "nginx:nope"' } : {}),
    }));
    const fitted = fitReport(health({ objects }));
    expect(Buffer.byteLength(encodeMessage(fitted))).toBeLessThanOrEqual(MAX_AGENT_MESSAGE_BYTES);
    expect(fitted.objects.length).toBeLessThanOrEqual(AGENT_LIMITS.changes);
    expect(fitted.truncated).toEqual({ objects: 30_000, counts: { current: 29_967, in_progress: 30, failed: 3 } });
    expect(fitted.objects.slice(0, 3).map((o) => o.state)).toEqual(['failed', 'failed', 'failed']);
    expect(fitted.objects.slice(3, 33).every((o) => o.state === 'in_progress')).toBe(true);
    expect(fitted.objects[0]).toMatchObject({ id: 'Deployment/ns-7/generated-object-7', reason: 'ImagePullBackOff' });
    expect(decodes(fitted)).toBe(true);
  });

  it('clips long strings of health objects so the report still decodes', () => {
    const fitted = fitReport(
      health({
        objects: [{ id: 'x'.repeat(5000), state: 'failed', reason: 'r'.repeat(1000), message: 'm'.repeat(10_000) }],
      }),
    );
    expect(fitted.truncated).toBeUndefined();
    expect(fitted.objects[0].reason!.length).toBe(AGENT_LIMITS.short);
    expect(fitted.objects[0].message!.length).toBe(AGENT_LIMITS.message);
    expect(decodes(fitted)).toBe(true);
  });
});

describe('status change codes (protocol 2)', () => {
  const failed = status({
    result: 'failed',
    changes: [
      { id: 'ConfigMap/default/a', action: 'failed', error: 'depends-on forms a cycle', code: 'DEPENDS_ON_CYCLE' },
      { id: 'ConfigMap/default/b', action: 'created' },
    ],
  });

  it("carries a failed object's code, bounded, and keeps it when a report is cut or clipped", () => {
    expect(decodes(failed)).toBe(true);
    expect(decodes(status({ changes: [{ id: 'a', action: 'failed', code: 'C'.repeat(101) }] }))).toBe(false);
    expect(fitReport(status({ changes: [{ id: 'a', action: 'failed', code: 'C'.repeat(500) }] })).changes[0].code).toBe(
      'C'.repeat(99) + '…',
    );
  });

  it('is version 2 only: a v1 session may not send it, and the agent leaves it out when it speaks 1', () => {
    expect(allowedInVersion(failed, 2)).toBe(true);
    expect(allowedInVersion(failed, 1)).toBe(false);
    expect(allowedInVersion(status(), 1)).toBe(true);
    const v1 = statusForVersion1(failed);
    expect(v1.changes).toEqual([
      { id: 'ConfigMap/default/a', action: 'failed', error: 'depends-on forms a cycle' },
      { id: 'ConfigMap/default/b', action: 'created' },
    ]);
    expect(allowedInVersion(v1, 1)).toBe(true);
    expect(statusForVersion1(status())).toEqual(status());
  });
});
