import { describe, expect, it } from '@jest/globals';
import type { Change, KubeObject } from './types.js';
import { LAST_APPLIED_ANNOTATION } from './labels.js';
import { actionOfPlan, changeSetToStatusChanges, formatChangeLine, formatSummary, maskSecretObject, maskSecretPatch, summarize } from './report.js';

describe('masking Secret values', () => {
  const patch = [
    { op: 'test' as const, path: '/metadata/resourceVersion', value: '7' },
    { op: 'replace' as const, path: '/data/password', value: 'aHVudGVyMg==' },
    { op: 'add' as const, path: '/data', value: { a: 'YQ==', b: 'Yg==' } },
    { op: 'add' as const, path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: '{"stringData":{"p":"x"}}', keep: 'me' } },
    { op: 'remove' as const, path: '/data/old' },
    { op: 'replace' as const, path: '/type', value: 'Opaque' },
  ];

  it('masks every value under data and stringData of a Secret patch, and nothing else', () => {
    expect(maskSecretPatch('Secret', patch)).toEqual([
      patch[0],
      { op: 'replace', path: '/data/password', value: '***' },
      { op: 'add', path: '/data', value: { a: '***', b: '***' } },
      { op: 'add', path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: '***', keep: 'me' } },
      patch[4],
      patch[5],
    ]);
    expect(JSON.stringify(maskSecretPatch(patch, 'Secret/default/s'))).not.toMatch(/aHVudGVy|YQ==|"p":"x"/);
  });

  it('leaves patches of other kinds as they are', () => {
    expect(maskSecretPatch('ConfigMap', patch)).toEqual(patch);
    expect(maskSecretPatch(patch, 'ConfigMap/default/c')).toEqual(patch);
  });

  it('masks a whole Secret object without touching the original', () => {
    const secret: KubeObject = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', annotations: { [LAST_APPLIED_ANNOTATION]: 'x' } }, data: { a: 'YQ==' }, stringData: { b: 'b' } };
    const masked = maskSecretObject(secret);
    expect(masked).toMatchObject({ data: { a: '***' }, stringData: { b: '***' }, metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: '***' } } });
    expect(secret.data).toEqual({ a: 'YQ==' });
  });
});

describe('summaries and lines', () => {
  const changes: Change[] = [
    { id: 'Deployment/default/nginx', action: 'configured' },
    { id: 'Service/default/nginx', action: 'unchanged' },
    { id: 'ConfigMap/default/c', action: 'failed', error: { code: 'x', message: 'admission webhook denied it' } },
    { id: 'Secret/default/s', action: 'skipped', reason: 'owned by inventory other' },
  ];

  it('counts every action, zeros included', () => {
    expect(summarize(changes)).toEqual({ created: 0, configured: 1, unchanged: 1, pruned: 0, skipped: 1, failed: 1 });
    expect(formatSummary(changes)).toBe('1 configured, 1 unchanged, 1 skipped, 1 failed');
  });

  it('prints one line per object with the reason for failures and skips', () => {
    expect(changes.map(formatChangeLine)).toEqual([
      'Deployment/default/nginx configured',
      'Service/default/nginx unchanged',
      'ConfigMap/default/c failed: admission webhook denied it',
      'Secret/default/s skipped: owned by inventory other',
    ]);
  });

  it('turns a change set into status entries carrying errors', () => {
    expect(changeSetToStatusChanges({ unit: 'u', changes, errors: [], durationMs: 1, dryRun: false })[2]).toEqual({ id: 'ConfigMap/default/c', action: 'failed', error: 'admission webhook denied it' });
    expect(actionOfPlan('patch')).toBe('configured');
  });
});
