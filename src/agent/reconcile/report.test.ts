import { describe, expect, it } from '@jest/globals';
import type { Change, ChangeSet } from './types.js';
import type { JsonPatchOp, KubeObject } from '../kube/types.js';
import { LAST_APPLIED_ANNOTATION } from './labels.js';
import {
  applyOutput,
  changeLines,
  diffOutcome,
  failureProblems,
  formatChangeLine,
  formatDiff,
  maskChange,
  maskSecretObject,
  maskSecretPatch,
  resultOf,
  statusChanges,
} from './report.js';

const SECRETS = /aHVudGVyMg|hunter2|YQ==|Yg==|c2VjcmV0|"p":"x"|s3cr3t/;
const lastApplied = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', stringData: { p: 'x' }, data: { k: 's3cr3t' } });
const escaped = LAST_APPLIED_ANNOTATION.replace('/', '~1');

describe('maskSecretPatch', () => {
  it.each<[string, JsonPatchOp]>([
    ['a data value', { op: 'replace', path: '/data/password', value: 'aHVudGVyMg==' }],
    ['all of data', { op: 'add', path: '/data', value: { a: 'YQ==', b: 'Yg==' } }],
    ['all of stringData', { op: 'add', path: '/stringData', value: { user: 'hunter2' } }],
    ['a guard on a value', { op: 'test', path: '/data/password', value: 'aHVudGVyMg==' }],
    [
      'the whole object',
      {
        op: 'add',
        path: '',
        value: {
          kind: 'Secret',
          data: { k: 'c2VjcmV0' },
          metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied } },
        },
      },
    ],
    // kubectl's last-applied-configuration annotation holds every value of the Secret too.
    ['the last-applied annotation', { op: 'replace', path: `/metadata/annotations/${escaped}`, value: lastApplied }],
    [
      'all annotations',
      { op: 'add', path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: lastApplied, keep: 'me' } },
    ],
    [
      'all of metadata',
      { op: 'add', path: '/metadata', value: { name: 's', annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied } } },
    ],
  ])('never lets a Secret value through in %s', (_what, op) => {
    const masked = maskSecretPatch('Secret', [op]);
    expect(JSON.stringify(masked)).not.toMatch(SECRETS);
    expect(JSON.stringify(masked)).toContain('***');
    expect(masked[0].path).toBe(op.path);
  });

  it('masks values only: paths, other fields and other annotations stay readable', () => {
    const patch: JsonPatchOp[] = [
      { op: 'test', path: '/metadata/resourceVersion', value: '7' },
      { op: 'add', path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: lastApplied, keep: 'me' } },
      { op: 'add', path: '/data', value: { a: 'YQ==' } },
      { op: 'remove', path: '/data/old' },
      { op: 'replace', path: '/type', value: 'Opaque' },
    ];
    expect(maskSecretPatch('Secret', patch)).toEqual([
      patch[0],
      { op: 'add', path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: '***', keep: 'me' } },
      { op: 'add', path: '/data', value: { a: '***' } },
      patch[3],
      patch[4],
    ]);
  });

  it('leaves patches of other kinds as they are', () => {
    const patch: JsonPatchOp[] = [{ op: 'replace', path: '/data/password', value: 'visible' }];
    expect(maskSecretPatch('ConfigMap', patch)).toEqual(patch);
  });

  it('masks a change by the kind in its id, as the engine calls it', () => {
    const change: Change = {
      id: 'Secret/default/s',
      action: 'configured',
      patch: [{ op: 'replace', path: '/data/k', value: 'c2VjcmV0' }],
    };
    expect(maskChange(change).patch).toEqual([{ op: 'replace', path: '/data/k', value: '***' }]);
    expect(maskChange({ ...change, id: 'ConfigMap/default/s' }).patch).toEqual(change.patch);
  });
});

describe('maskSecretObject', () => {
  it('masks a whole Secret without touching the original', () => {
    const secret: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', annotations: { [LAST_APPLIED_ANNOTATION]: lastApplied } },
      data: { a: 'YQ==' },
      stringData: { b: 'b' },
    };
    const masked = maskSecretObject(secret);
    expect(masked).toMatchObject({
      data: { a: '***' },
      stringData: { b: '***' },
      metadata: { annotations: { [LAST_APPLIED_ANNOTATION]: '***' } },
    });
    expect(secret.data).toEqual({ a: 'YQ==' });
  });
});

describe('what a change set reads as', () => {
  const changes: Change[] = [
    { id: 'Deployment/default/nginx', action: 'configured', reason: 'spec differs' },
    { id: 'Service/default/nginx', action: 'unchanged' },
    {
      id: 'ConfigMap/default/c',
      action: 'failed',
      reason: 'ConfigMap/default/c: denied',
      error: { code: 'KUBE_FORBIDDEN', message: 'ConfigMap/default/c: denied', object: 'ConfigMap/default/c' },
    },
    { id: 'Secret/default/s', action: 'skipped', reason: 'owned by inventory other' },
    { id: 'Role/default/r', action: 'pruned', reason: 'already gone' },
    { id: 'Job/default/j', action: 'failed', reason: 'timed out' },
  ];
  const set = (c: Change[], errors: ChangeSet['errors'] = []): ChangeSet => ({
    unit: 'u',
    changes: c,
    errors,
    durationMs: 1,
    dryRun: false,
  });

  it('prints one line per object, with why for pruned, skipped and failed ones', () => {
    expect(changes.map(formatChangeLine)).toEqual([
      'Deployment/default/nginx configured',
      'Service/default/nginx unchanged',
      'ConfigMap/default/c failed: ConfigMap/default/c: denied',
      'Secret/default/s skipped: owned by inventory other',
      'Role/default/r pruned: already gone',
      'Job/default/j failed: timed out',
    ]);
    expect(changeLines(set(changes))).not.toContain('Service/default/nginx unchanged');
  });

  it('gives the status entries, skipped and failed ones with why', () => {
    expect(statusChanges(set(changes))).toEqual([
      { id: 'Deployment/default/nginx', action: 'configured' },
      { id: 'Service/default/nginx', action: 'unchanged' },
      { id: 'ConfigMap/default/c', action: 'failed', error: 'ConfigMap/default/c: denied', code: 'KUBE_FORBIDDEN' },
      { id: 'Secret/default/s', action: 'skipped', error: 'owned by inventory other' },
      { id: 'Role/default/r', action: 'pruned' },
      { id: 'Job/default/j', action: 'failed', error: 'timed out' },
    ]);
  });

  it.each<[string, Change[], ChangeSet['errors'], string]>([
    ['nothing failed', changes.slice(0, 2), [], 'applied'],
    ['some objects failed', changes, [], 'partial'],
    ['every object failed', [changes[2]], [], 'failed'],
    ['a problem before any object', [], [{ code: 'MANIFEST_SYNTAX', message: 'a.yaml:1: bad' }], 'failed'],
    ['an object owned by another inventory was skipped', [changes[0], changes[3]], [], 'applied'],
    [
      'an object waits for a dependency that is not current',
      [
        changes[0],
        {
          id: 'Deployment/default/web',
          action: 'skipped',
          reason: 'depends on ConfigMap/default/c, which is in_progress',
          error: { code: 'DEPENDENCY_NOT_READY', message: 'depends on ConfigMap/default/c, which is in_progress' },
        },
      ],
      [],
      'partial',
    ],
  ])('calls the result of a set where %s', (_what, c, errors, result) => {
    expect(resultOf(set(c, errors))).toBe(result);
  });

  it('names the cause of a failure, per object when nothing else failed', () => {
    const why = failureProblems(set(changes));
    expect(why.cause).toBe('ConfigMap/default/c: denied');
    expect(why.problems[1]).toEqual({
      code: 'APPLY_FAILED',
      message: 'Job/default/j: timed out',
      object: 'Job/default/j',
    });
    expect(failureProblems(set([], [{ code: 'MANIFEST_SYNTAX', message: 'bad' }])).cause).toBe('bad');
  });
});

describe('what gitops-agent apply and diff print', () => {
  const foreign =
    "owned by inventory ns/other, not ns/cli: remove it from that inventory's manifests first, or set inventory_policy: adopt_all to take it over";
  const changes: Change[] = [
    { id: 'ConfigMap/a/x', action: 'configured', patch: [{ op: 'replace', path: '/data/k', value: 'v' }] },
    { id: 'ConfigMap/a/y', action: 'unchanged' },
    { id: 'Secret/a/s', action: 'created' },
    { id: 'Deployment/a/web', action: 'skipped', reason: foreign },
  ];

  it('apply: one line per object, dry runs marked, problems on stderr', () => {
    const set: ChangeSet = {
      unit: 'u',
      changes: changes.slice(2),
      errors: [{ code: 'KUBE_FORBIDDEN', message: 'denied' }],
      durationMs: 1,
      dryRun: true,
    };
    expect(applyOutput(set)).toEqual({
      out: ['Secret/a/s created (server dry run)', `Deployment/a/web skipped (server dry run): ${foreign}`],
      err: ['error: denied'],
    });
  });

  it('diff: each object apply would change, with its patch, and each it would skip, with the reason apply gives', () => {
    expect(formatDiff(changes)).toEqual([
      '--- ConfigMap/a/x (would change)',
      '    {"op":"replace","path":"/data/k","value":"v"}',
      '--- Secret/a/s (would be created)',
      '--- Deployment/a/web (would be skipped, not converged)',
      `    ${foreign}`,
    ]);
  });

  it.each<[string, Change[], ChangeSet['errors'], number]>([
    ['everything unchanged', [changes[1]], [], 0],
    ['an object would change', changes.slice(0, 2), [], 1],
    // The bug: diff without the --inventory apply used showed nothing and exited 0 here.
    ['every object would be skipped', [changes[3], { ...changes[3], id: 'Service/a/web' }], [], 1],
    ['an object would be rejected', [{ id: 'ConfigMap/a/z', action: 'failed', reason: 'invalid' }], [], 2],
    ['the set has a problem', [], [{ code: 'MANIFEST_SYNTAX', message: 'a.yaml:1: bad' }], 2],
  ])('diff exits by what an apply would do: %s', (_what, c, errors, code) => {
    const outcome = diffOutcome({ changes: c, errors });
    expect(outcome.exitCode).toBe(code);
    expect(outcome.shown).toEqual(c.filter((x) => x.action !== 'unchanged'));
  });
});
