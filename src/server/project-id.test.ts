import { describe, expect, it } from '@jest/globals';
import { allowEntryProblem, checkProjectId, projectIdProblem, quoteId } from './project-id.js';

describe('projectIdProblem', () => {
  it.each([
    'p',
    'group/name',
    'group/sub/kubernetes-agent',
    '_private/x',
    '1group/2name',
    'a.b/c-d_e',
    'g/name.gitx',
    `${'a/'.repeat(19)}a`,
    'x'.repeat(255),
  ])('accepts %s', (id) => {
    expect(projectIdProblem(id)).toBeUndefined();
  });

  it.each<[string, RegExp]>([
    ['', /must not be empty/],
    ['../../etc', /segment 1 must start with a letter, digit or '_'/],
    ['group/../etc', /segment 2 must start/],
    ['group/a..b', /must not contain '\.\.'/],
    ['http://169.254.169.254/latest', /segment 1 may contain only/],
    ['/group/name', /segment 1 is empty/],
    ['group/name/', /segment 3 is empty/],
    ['group//name', /segment 2 is empty/],
    ['group/name.', /must not end in '\.'/],
    ['group/name.git', /'\.git' or '\.atom'/],
    ['group/name.ATOM', /'\.git' or '\.atom'/],
    ['-group/name', /must start with a letter/],
    ['.hidden/name', /must start with a letter/],
    ['group/na me', /may contain only/],
    ['group/name?x=1', /may contain only/],
    ['group\\name', /may contain only/],
    ['grüppe/name', /may contain only/],
    ['group/name\n', /may contain only/],
    ['x'.repeat(256), /at most 255 characters \(this one has 256\)/],
    [`${'a/'.repeat(20)}a`, /at most 20 levels \(this one has 21\)/],
  ])('refuses %j', (id, reason) => {
    expect(projectIdProblem(id)).toMatch(reason);
  });

  it('refuses a value that is not a string (records and configs are parsed from JSON/YAML)', () => {
    expect(projectIdProblem(42 as unknown as string)).toMatch(/must be a string/);
  });
});

describe('checkProjectId', () => {
  it('passes a valid path', () => {
    expect(() => checkProjectId('group/name')).not.toThrow();
  });

  it('throws GIT_BAD_PROJECT_ID naming the id and the reason', () => {
    expect(() => checkProjectId('../../etc')).toThrow(
      expect.objectContaining({ code: 'GIT_BAD_PROJECT_ID', kind: 'user' }),
    );
    expect(() => checkProjectId('../../etc')).toThrow(/project "\.\.\/\.\.\/etc": segment 1 must start/);
  });

  it('echoes at most a bounded, escaped prefix of an absurd id', () => {
    let message = '';
    try {
      checkProjectId(`${'y'.repeat(5000)}\u001b[31m`);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message.length).toBeLessThan(250);
    expect(quoteId('a\u001bb')).toBe('"a\\u001bb"');
  });
});

describe('allowEntryProblem', () => {
  it.each(['tenant-b/', 'tenant-b/secret-manifests', 'a/b/', 'p'])('accepts %s', (entry) => {
    expect(allowEntryProblem(entry)).toBeUndefined();
  });

  it.each<[string, RegExp]>([
    ['/', /must not be empty/],
    ['//', /segment 1 is empty/],
    ['tenant-b//', /segment 2 is empty/],
    ['../', /segment 1 must start/],
    ['*', /may contain only/],
    ['', /must not be empty/],
  ])('refuses %j', (entry, reason) => {
    expect(allowEntryProblem(entry)).toMatch(reason);
    expect(allowEntryProblem(entry)).toMatch(/group prefix such as group\//);
  });
});
