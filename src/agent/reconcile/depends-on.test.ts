import { describe, expect, it } from '@jest/globals';
import type { ResolvedObject } from './types.js';
import type { KubeObject } from '../kube/types.js';
import {
  DEPENDS_ON_ANNOTATION,
  MAX_DEPENDS_ON_BYTES,
  MAX_DEPENDS_ON_REFS,
  dependencyWaves,
  formatDependencyRef,
  parseDependsOn,
} from './depends-on.js';

const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'CustomResourceDefinition']);

/** A resolved object as resolve.ts makes one; `spec` is `Kind/name` or `Kind/namespace/name`, apps kinds in apps. */
function obj(spec: string, dependsOn?: string, line = 1): ResolvedObject {
  const [kind, ...rest] = spec.split('/');
  const namespaced = !CLUSTER_SCOPED.has(kind);
  const namespace = namespaced ? (rest.length === 2 ? rest[0] : 'default') : undefined;
  const name = rest[rest.length - 1];
  const group = ['Deployment', 'StatefulSet'].includes(kind)
    ? 'apps'
    : kind === 'ClusterRole'
      ? 'rbac.authorization.k8s.io'
      : '';
  const version = group === '' ? 'v1' : `${group}/v1`;
  const object: KubeObject = {
    apiVersion: version,
    kind,
    metadata: {
      name,
      ...(namespace ? { namespace } : {}),
      ...(dependsOn === undefined ? {} : { annotations: { [DEPENDS_ON_ANNOTATION]: dependsOn } }),
    },
  };
  const id = namespace ? `${kind}/${namespace}/${name}` : `${kind}/${name}`;
  return {
    object,
    source: { file: 'app.yaml', line },
    id,
    key: `${group}/${kind}/${namespace ?? ''}/${name}`,
    resource: { group, version: 'v1', kind, plural: `${kind.toLowerCase()}s`, namespaced },
  };
}

/** Objects numbered by line in input order, so problems can be checked by file and line. */
function set(...objects: Array<[string, string?]>): ResolvedObject[] {
  return objects.map(([spec, dependsOn], i) => obj(spec, dependsOn, i + 1));
}

const ids = (waves: ResolvedObject[][]): string[][] => waves.map((w) => w.map((o) => o.id));

describe('parseDependsOn', () => {
  it.each([
    [
      'a core namespaced object',
      '/namespaces/ns/ConfigMap/cm',
      [{ group: '', namespace: 'ns', kind: 'ConfigMap', name: 'cm' }],
    ],
    [
      'a namespaced object in a group',
      'apps/namespaces/web/Deployment/api',
      [{ group: 'apps', namespace: 'web', kind: 'Deployment', name: 'api' }],
    ],
    [
      'a cluster-scoped object',
      'rbac.authorization.k8s.io/ClusterRole/view',
      [{ group: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'view' }],
    ],
    ['a core cluster-scoped object', '/Namespace/demo', [{ group: '', kind: 'Namespace', name: 'demo' }]],
    [
      'several, with whitespace and newlines around them (YAML block scalars)',
      '  /namespaces/a/ConfigMap/c ,\n apps/namespaces/a/Deployment/d\n',
      [
        { group: '', namespace: 'a', kind: 'ConfigMap', name: 'c' },
        { group: 'apps', namespace: 'a', kind: 'Deployment', name: 'd' },
      ],
    ],
    ['a repeated reference once', '/Namespace/demo,/Namespace/demo', [{ group: '', kind: 'Namespace', name: 'demo' }]],
  ])('reads %s', (_what, value, refs) => {
    expect(parseDependsOn(value)).toEqual({ refs });
  });

  it.each([
    ['an empty value', '', /empty/],
    ['a value of spaces', '   ', /empty/],
    ['an empty reference between commas', '/Namespace/a,,/Namespace/b', /reference 2 is empty/],
    ['a trailing comma', '/Namespace/a,', /reference 2 is empty/],
    ['four fields', 'apps/web/Deployment/api', /4 fields/],
    ['five fields without "namespaces"', 'apps/ns/web/Deployment/api', /"namespaces"/],
    ['an empty name', '/namespaces/ns/ConfigMap/', /must be non-empty/],
    ['an empty kind', '//demo', /must be non-empty/],
    ['an empty namespace', '/namespaces//ConfigMap/cm', /must be non-empty/],
    ['whitespace inside a reference', '/namespaces/ns/Config Map/cm', /must be non-empty/],
    ['a bare name', 'cm', /"cm" has 1 field; write/],
    [
      'more references than allowed',
      Array(MAX_DEPENDS_ON_REFS + 1)
        .fill('/Namespace/a')
        .join(','),
      /at most 100/,
    ],
    ['a value over 8 KiB', `/Namespace/${'x'.repeat(MAX_DEPENDS_ON_BYTES)}`, /longer than 8192 bytes/],
    [
      'a value over 8 KiB in UTF-8 only',
      `/Namespace/${'é'.repeat(MAX_DEPENDS_ON_BYTES / 2)}`,
      /longer than 8192 bytes/,
    ],
  ])('refuses %s', (_what, value, error) => {
    const result = parseDependsOn(value);
    expect('error' in result && result.error).toMatch(error);
  });

  it('accepts exactly the bounds', () => {
    const hundred = Array.from({ length: MAX_DEPENDS_ON_REFS }, (_, i) => `/Namespace/n${i}`).join(',');
    expect('refs' in parseDependsOn(hundred) && parseDependsOn(hundred)).toMatchObject({ refs: { length: 100 } });
    const full = `/Namespace/${'x'.repeat(MAX_DEPENDS_ON_BYTES - '/Namespace/'.length)}`;
    expect(parseDependsOn(full)).toEqual({ refs: [{ group: '', kind: 'Namespace', name: expect.any(String) }] });
  });

  it('formats what it reads back to the same text', () => {
    for (const text of ['/namespaces/ns/ConfigMap/cm', 'rbac.authorization.k8s.io/ClusterRole/view']) {
      const parsed = parseDependsOn(text);
      expect('refs' in parsed && parsed.refs.map(formatDependencyRef)).toEqual([text]);
    }
  });
});

describe('dependencyWaves orders', () => {
  it.each<[string, Array<[string, string?]>, string[][]]>([
    ['nothing', [], []],
    [
      'objects without the annotation in one wave, in input order',
      [['Deployment/web'], ['ConfigMap/cfg'], ['Namespace/demo']],
      [['Deployment/default/web', 'ConfigMap/default/cfg', 'Namespace/demo']],
    ],
    [
      'a Deployment after the ConfigMap it names, whatever the input order',
      [['Deployment/web', '/namespaces/default/ConfigMap/cfg'], ['ConfigMap/cfg']],
      [['ConfigMap/default/cfg'], ['Deployment/default/web']],
    ],
    [
      'a diamond in three waves, input order kept within a wave',
      [
        ['ConfigMap/d', '/namespaces/default/ConfigMap/c, /namespaces/default/ConfigMap/b'],
        ['ConfigMap/c', '/namespaces/default/ConfigMap/a'],
        ['ConfigMap/b', '/namespaces/default/ConfigMap/a'],
        ['ConfigMap/a'],
      ],
      [['ConfigMap/default/a'], ['ConfigMap/default/c', 'ConfigMap/default/b'], ['ConfigMap/default/d']],
    ],
    [
      'an object after its latest dependency (the longest path decides)',
      [
        ['ConfigMap/a'],
        ['ConfigMap/b', '/namespaces/default/ConfigMap/a'],
        ['ConfigMap/c', '/namespaces/default/ConfigMap/b'],
        ['ConfigMap/d', '/namespaces/default/ConfigMap/a,/namespaces/default/ConfigMap/c'],
      ],
      [['ConfigMap/default/a'], ['ConfigMap/default/b'], ['ConfigMap/default/c'], ['ConfigMap/default/d']],
    ],
    [
      'across namespaces, groups and scopes',
      [
        [
          'Deployment/prod/api',
          '/Namespace/prod, rbac.authorization.k8s.io/ClusterRole/view, /namespaces/shared/ConfigMap/cfg',
        ],
        ['ConfigMap/shared/cfg', '/Namespace/shared'],
        ['Namespace/prod'],
        ['Namespace/shared'],
        ['ClusterRole/view'],
      ],
      [['Namespace/prod', 'Namespace/shared', 'ClusterRole/view'], ['ConfigMap/shared/cfg'], ['Deployment/prod/api']],
    ],
  ])('%s', (_what, objects, waves) => {
    const result = dependencyWaves(set(...objects));
    expect(result.problems).toEqual([]);
    expect(ids(result.waves)).toEqual(waves);
  });
});

describe('dependencyWaves leaves out, naming what to fix', () => {
  it('an object naming one that is not in the commit, suggesting the near miss, and what depends on it', () => {
    const { waves, problems } = dependencyWaves(
      set(
        ['ConfigMap/cfg'],
        ['Deployment/web', 'apps/namespaces/default/ConfigMap/cfg, /namespaces/default/Secret/db'],
        ['Deployment/worker', 'apps/namespaces/default/Deployment/web'],
      ),
    );
    expect(ids(waves)).toEqual([['ConfigMap/default/cfg']]);
    expect(problems).toEqual([
      {
        code: 'DEPENDS_ON_UNKNOWN',
        object: 'Deployment/default/web',
        file: 'app.yaml',
        line: 2,
        message:
          'app.yaml:2: Deployment/default/web: config.kubernetes.io/depends-on names ' +
          '"apps/namespaces/default/ConfigMap/cfg" (did you mean "/namespaces/default/ConfigMap/cfg"?), ' +
          '"/namespaces/default/Secret/db", not in this commit: ' +
          'add the object to the commit or remove the reference from the annotation',
      },
      {
        code: 'DEPENDENCY_NOT_READY',
        object: 'Deployment/default/worker',
        file: 'app.yaml',
        line: 3,
        message:
          'app.yaml:3: Deployment/default/worker: depends on Deployment/default/web, ' +
          'which is not applied: it names objects not in this commit',
      },
    ]);
  });

  it.each([
    ['a malformed reference', 'default/ConfigMap/cfg,', /depends-on: reference 2 is empty/],
    [
      'a namespace on a cluster-scoped kind',
      '/namespaces/default/Namespace/demo',
      /Namespace is cluster-scoped; write "\/Namespace\/demo"/,
    ],
    [
      'no namespace on a namespaced kind',
      '/ConfigMap/cfg',
      /ConfigMap is namespaced; write "\/namespaces\/<namespace>\/ConfigMap\/cfg"/,
    ],
  ])('an object with %s, as invalid', (_what, value, message) => {
    const { waves, problems } = dependencyWaves(set(['Namespace/demo'], ['ConfigMap/cfg'], ['Deployment/web', value]));
    expect(ids(waves)).toEqual([['Namespace/demo', 'ConfigMap/default/cfg']]);
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ code: 'DEPENDS_ON_INVALID', object: 'Deployment/default/web', line: 3 });
    expect(problems[0].message).toMatch(message);
  });

  it('every object on a cycle and what depends on it, naming the cycle; the rest is applied', () => {
    const { waves, problems } = dependencyWaves(
      set(
        ['ConfigMap/a', '/namespaces/default/ConfigMap/b'],
        ['ConfigMap/b', '/namespaces/default/ConfigMap/a'],
        ['Deployment/web', '/namespaces/default/ConfigMap/b'],
        ['ConfigMap/free'],
      ),
    );
    expect(ids(waves)).toEqual([['ConfigMap/default/free']]);
    const cycle = 'ConfigMap/default/a -> ConfigMap/default/b -> ConfigMap/default/a';
    expect(problems.map((p) => [p.code, p.object, p.message])).toEqual([
      [
        'DEPENDS_ON_CYCLE',
        'ConfigMap/default/a',
        `app.yaml:1: ConfigMap/default/a: depends-on forms a cycle: ${cycle}`,
      ],
      [
        'DEPENDS_ON_CYCLE',
        'ConfigMap/default/b',
        `app.yaml:2: ConfigMap/default/b: depends-on forms a cycle: ${cycle}`,
      ],
      [
        'DEPENDS_ON_CYCLE',
        'Deployment/default/web',
        `app.yaml:3: Deployment/default/web: depends on ConfigMap/default/b, which is on a depends-on cycle: ${cycle}`,
      ],
    ]);
  });

  it('an object depending on itself', () => {
    const { waves, problems } = dependencyWaves(set(['ConfigMap/a', '/namespaces/default/ConfigMap/a']));
    expect(waves).toEqual([]);
    expect(problems.map((p) => p.message)).toEqual([
      'app.yaml:1: ConfigMap/default/a: depends-on forms a cycle: ConfigMap/default/a -> ConfigMap/default/a',
    ]);
  });

  it('a cycle and its own unknown reference, both', () => {
    const { problems } = dependencyWaves(
      set(['ConfigMap/a', '/namespaces/default/ConfigMap/a, /namespaces/default/ConfigMap/gone']),
    );
    expect(problems.map((p) => p.code)).toEqual(['DEPENDS_ON_UNKNOWN', 'DEPENDS_ON_CYCLE']);
  });

  it('two separate cycles, each named by its own objects', () => {
    const { problems } = dependencyWaves(
      set(
        ['ConfigMap/a', '/namespaces/default/ConfigMap/b'],
        ['ConfigMap/b', '/namespaces/default/ConfigMap/c'],
        ['ConfigMap/c', '/namespaces/default/ConfigMap/a'],
        ['ConfigMap/x', '/namespaces/default/ConfigMap/y'],
        ['ConfigMap/y', '/namespaces/default/ConfigMap/x'],
      ),
    );
    expect(problems.map((p) => p.message.replace(/.*cycle: /, ''))).toEqual([
      ...Array(3).fill('ConfigMap/default/a -> ConfigMap/default/b -> ConfigMap/default/c -> ConfigMap/default/a'),
      ...Array(2).fill('ConfigMap/default/x -> ConfigMap/default/y -> ConfigMap/default/x'),
    ]);
  });
});

describe('dependencyWaves on large sets', () => {
  /** n ConfigMaps, each depending on the one before it (the last on the first when `closed`). */
  function chain(n: number, closed = false): ResolvedObject[] {
    return Array.from({ length: n }, (_, i) => {
      const before = i > 0 ? i - 1 : closed ? n - 1 : -1;
      return obj(`ConfigMap/c${i}`, before < 0 ? undefined : `/namespaces/default/ConfigMap/c${before}`, i + 1);
    });
  }

  function timed<T>(run: () => T): { result: T; ms: number } {
    const start = performance.now();
    const result = run();
    return { result, ms: performance.now() - start };
  }

  it('orders a chain of 10,000 objects into 10,000 waves, fast', () => {
    const { result, ms } = timed(() => dependencyWaves(chain(10_000)));
    expect(result.problems).toEqual([]);
    expect(result.waves).toHaveLength(10_000);
    expect(result.waves[9_999].map((o) => o.id)).toEqual(['ConfigMap/default/c9999']);
    expect(ms).toBeLessThan(2_000);
  });

  it('stays linear on a chain of 100,000 objects (quadratic work would take minutes)', () => {
    const objects = chain(100_000);
    const { result, ms } = timed(() => dependencyWaves(objects));
    expect(result.waves).toHaveLength(100_000);
    expect(ms).toBeLessThan(10_000);
  });

  it('rejects a cycle of 10,000 objects with a readable message, fast', () => {
    const { result, ms } = timed(() => dependencyWaves(chain(10_000, true)));
    expect(result.waves).toEqual([]);
    expect(result.problems).toHaveLength(10_000);
    expect(result.problems[0].message).toBe(
      'app.yaml:1: ConfigMap/default/c0: depends-on forms a cycle: ConfigMap/default/c0 -> ConfigMap/default/c9999 -> ' +
        'ConfigMap/default/c9998 -> ConfigMap/default/c9997 -> ConfigMap/default/c9996 -> ConfigMap/default/c9995 -> ' +
        'ConfigMap/default/c9994 -> ConfigMap/default/c9993 -> ConfigMap/default/c9992 -> ConfigMap/default/c9991 -> ' +
        '... (9990 more) -> ConfigMap/default/c0',
    );
    expect(ms).toBeLessThan(2_000);
  });

  it('puts 10,000 objects depending on one into a single second wave, in input order', () => {
    const objects = [
      obj('Namespace/app'),
      ...Array.from({ length: 10_000 }, (_, i) => obj(`ConfigMap/app/c${i}`, '/Namespace/app', i + 2)),
    ];
    const { waves, problems } = dependencyWaves(objects);
    expect(problems).toEqual([]);
    expect(waves.map((w) => w.length)).toEqual([1, 10_000]);
    expect(waves[1]).toEqual(objects.slice(1));
  });
});
