import { describe, expect, it } from '@jest/globals';
import { ProblemCode } from '../../protocol/problems.js';
import { parseManifests } from './parse.js';

const deploy = (name: string, ns = 'default') => `apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${name}
  namespace: ${ns}
spec:
  replicas: 2
`;

describe('parseManifests', () => {
  it('reads every document of a multi-document YAML file with its first line', () => {
    const content = `# leading comment\n${deploy('a')}---\n${deploy('b')}`;
    const { objects, errors } = parseManifests([{ path: 'manifest.yaml', content }]);
    expect(errors).toEqual([]);
    expect(objects.map((o) => [o.object.metadata.name, o.source])).toEqual([
      ['a', { file: 'manifest.yaml', line: 2 }],
      ['b', { file: 'manifest.yaml', line: 10 }],
    ]);
  });

  it('skips empty documents and documents holding only comments', () => {
    const content = `---\n---\n# nothing here\n---\n${deploy('a')}---\n`;
    const { objects, errors } = parseManifests([
      { path: 'm.yaml', content },
      { path: 'empty.yaml', content: '' },
    ]);
    expect(errors).toEqual([]);
    expect(objects).toHaveLength(1);
    expect(objects[0].source.line).toBe(5);
  });

  it('flattens a List kind, keeping the line of each item', () => {
    const content = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: one}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: two}
`;
    const { objects, errors } = parseManifests([{ path: 'list.yaml', content }]);
    expect(errors).toEqual([]);
    expect(objects.map((o) => `${o.object.metadata.name}@${o.source.line}`)).toEqual(['one@4', 'two@7']);
  });

  it('reads a JSON file holding one object or a List', () => {
    const one = JSON.stringify(
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' }, data: { a: '1' } },
      null,
      '\t',
    );
    const list = JSON.stringify(
      {
        apiVersion: 'v1',
        kind: 'ConfigMapList',
        items: [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'd' } }],
      },
      null,
      2,
    );
    const { objects, errors } = parseManifests([
      { path: 'one.json', content: one },
      { path: 'list.json', content: list },
    ]);
    expect(errors).toEqual([]);
    expect(objects.map((o) => `${o.source.file}:${o.source.line}:${o.object.metadata.name}`)).toEqual([
      'one.json:1:c',
      'list.json:5:d',
    ]);
    expect(objects[0].object.data).toEqual({ a: '1' });
  });

  it('gives each item of a List in a JSON file its own line, whatever the strings hold', () => {
    const items = [
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'a' },
        data: { tricky: 'quote " bracket ] brace } comma , backslash \\', items: '[1, 2]' },
      },
      { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'b' }, data: { list: '["x"]' } },
    ];
    const pretty = JSON.stringify({ apiVersion: 'v1', kind: 'List', items }, null, 2);
    const compact = `\n${JSON.stringify({ apiVersion: 'v1', kind: 'List', items })}`;
    const lineOfB = pretty
      .slice(0, pretty.lastIndexOf('\n    {', pretty.indexOf('"name": "b"')) + 1)
      .split('\n').length;
    const fromPretty = parseManifests([{ path: 'pretty.json', content: pretty }]);
    const fromCompact = parseManifests([{ path: 'compact.json', content: compact }]);
    expect([...fromPretty.errors, ...fromCompact.errors]).toEqual([]);
    expect(
      [...fromPretty.objects, ...fromCompact.objects].map(
        (o) => `${o.source.file}:${o.source.line}:${o.object.metadata.name}`,
      ),
    ).toEqual(['pretty.json:5:a', `pretty.json:${lineOfB}:b`, 'compact.json:2:a', 'compact.json:2:b']);
    expect(lineOfB).toBeGreaterThan(5);
    expect(fromPretty.objects[0].object.data).toEqual(items[0].data);
  });

  it('reports a repeated key and invalid syntax in a JSON file with their lines', () => {
    const dup =
      '{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n  "kind": "Secret",\n  "metadata": {"name": "x"}\n}\n';
    const broken = '{\n  "apiVersion": "v1",\n  "kind": "ConfigMap"\n  "metadata": {"name": "x"}\n}\n';
    const { objects, errors } = parseManifests([
      { path: 'dup.json', content: dup },
      { path: 'broken.json', content: broken },
    ]);
    expect(objects).toEqual([]);
    expect(errors.map((e) => `${e.code}@${e.file}:${e.line}`)).toEqual([
      `${ProblemCode.MANIFEST_SYNTAX}@dup.json:4`,
      `${ProblemCode.MANIFEST_SYNTAX}@broken.json:4`,
    ]);
  });

  it.each([
    [
      'a missing name',
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  labels: {a: b}\n',
      1,
      'object has no metadata.name: every object needs a name',
    ],
    ['a missing kind', 'apiVersion: v1\nmetadata: {name: x}\n', 1, 'object has no kind'],
    ['a missing apiVersion', 'kind: ConfigMap\nmetadata: {name: x}\n', 1, 'object has no apiVersion'],
    ['a missing metadata', 'apiVersion: v1\nkind: ConfigMap\n', 1, 'object has no metadata'],
    [
      'generateName',
      'apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n',
      1,
      'object uses metadata.generateName: GitOps needs a stable identity, set metadata.name instead',
    ],
    ['a scalar document', 'just text\n', 1, 'document is not an object'],
    [
      'a second document missing its name',
      `${deploy('ok')}---\napiVersion: v1\nkind: Service\nmetadata: {}\n`,
      9,
      'object has no metadata.name',
    ],
  ])('reports %s with file and line', (_what, content, line, text) => {
    const { objects, errors } = parseManifests([{ path: 'manifest.yaml', content }]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: ProblemCode.MANIFEST_INVALID_OBJECT, file: 'manifest.yaml', line });
    expect(errors[0].message).toContain(`manifest.yaml:${line}: ${text}`);
    expect(objects.length).toBeLessThanOrEqual(1);
  });

  it('reports a YAML syntax error with its line and keeps the valid documents of other files', () => {
    const { objects, errors } = parseManifests([
      { path: 'bad.yaml', content: 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n' },
      { path: 'good.yaml', content: deploy('a') },
    ]);
    expect(objects).toHaveLength(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: ProblemCode.MANIFEST_SYNTAX, file: 'bad.yaml' });
    expect(errors[0].message).toMatch(/^bad\.yaml:\d+: invalid YAML: .+: fix the syntax$/);
  });

  it('reports a duplicate key in a mapping as a syntax error', () => {
    const { errors } = parseManifests([
      { path: 'dup.yaml', content: 'apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: x}\n' },
    ]);
    expect(errors[0]).toMatchObject({ code: ProblemCode.MANIFEST_SYNTAX, line: 3 });
  });

  it('rejects a duplicate object naming both locations', () => {
    const { objects, errors } = parseManifests([
      { path: 'a.yaml', content: deploy('web') },
      { path: 'b.yaml', content: `# again\n${deploy('web')}` },
    ]);
    expect(objects).toHaveLength(1);
    expect(errors).toEqual([
      {
        code: ProblemCode.MANIFEST_DUPLICATE_OBJECT,
        file: 'b.yaml',
        line: 2,
        object: 'Deployment/default/web',
        message: 'b.yaml:2: Deployment/default/web is also defined at a.yaml:1: keep one definition of each object',
      },
    ]);
  });

  it('keeps same-named objects apart when group, kind or namespace differ', () => {
    const { objects, errors } = parseManifests([
      {
        path: 'm.yaml',
        content: `${deploy('web')}---\n${deploy('web', 'other')}---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n`,
      },
    ]);
    expect(errors).toEqual([]);
    expect(objects).toHaveLength(3);
  });
});
