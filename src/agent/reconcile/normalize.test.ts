import { describe, expect, it } from '@jest/globals';
import { base64Equal, leafEqual, parseQuantity, quantityEqual, semanticEqual, stringDataToData } from './normalize.js';

describe('quantities', () => {
  it.each<[string | number, string | number]>([
    ['0.5', '500m'],
    ['1024Mi', '1Gi'],
    ['1', '1000m'],
    ['1', 1],
    [0.5, '500m'],
    ['1e3', '1k'],
    ['1E3', '1000'],
    ['1.5Gi', '1536Mi'],
    ['100n', '0.0000001'],
    ['+2', '2'],
    ['.5', '500m'],
    ['1Ki', '1024'],
    ['1M', '1000k'],
    ['1e-3', '1m'],
  ])('%s equals %s', (a, b) => {
    expect(quantityEqual(a, b)).toBe(true);
  });

  it.each<[string | number, string | number]>([
    ['1', '1001m'],
    ['1Gi', '1G'],
    ['1Mi', '1M'],
    ['1E', '1e0'],
  ])('%s differs from %s', (a, b) => {
    expect(quantityEqual(a, b)).toBe(false);
  });

  it('parses exactly, with no floating-point rounding', () => {
    expect(parseQuantity('0.1')).toEqual({ n: 1n, d: 10n });
    expect(parseQuantity('1Ei')).toEqual({ n: 2n ** 60n, d: 1n });
    expect(quantityEqual('0.1', '100m')).toBe(true);
    expect(quantityEqual('123456789012345678901', '123456789012345678900')).toBe(false);
  });

  it.each(['', 'abc', '1Ki2', '1.2.3', 'Mi', '1 Gi', '1e999999'])('refuses %j as a quantity', (q) => {
    expect(parseQuantity(q)).toBeUndefined();
  });
});

describe('leafEqual and semanticEqual', () => {
  it('compares quantities by value only where Kubernetes stores quantities', () => {
    expect(semanticEqual('0.5', '500m', '/spec/template/spec/containers/0/resources/limits/cpu')).toBe(true);
    expect(
      semanticEqual(
        { cpu: '0.5', memory: '1024Mi' },
        { cpu: '500m', memory: '1Gi' },
        '/spec/containers/0/resources/requests',
      ),
    ).toBe(true);
    expect(semanticEqual({ hard: { pods: 10 } }, { hard: { pods: '10' } }, '/spec')).toBe(true);
    expect(semanticEqual('1Ki', '1024', '/spec/capacity/storage')).toBe(true);
    expect(semanticEqual('1Gi', '1024Mi', '/spec/volumes/0/emptyDir/sizeLimit')).toBe(true);
  });

  it('does not treat an int and a numeric string as equal elsewhere (int-or-string fields)', () => {
    expect(semanticEqual('80', 80, '/spec/ports/0/targetPort')).toBe(false);
    expect(semanticEqual('0.5', '500m', '/data/ratio')).toBe(false);
  });

  it('ignores live fields desired does not specify, and compares lists element by element', () => {
    expect(semanticEqual({ a: 1 }, { a: 1, b: 2 })).toBe(true);
    expect(semanticEqual([{ a: 1 }], [{ a: 1, defaulted: true }])).toBe(true);
    expect(semanticEqual([1, 2], [2, 1])).toBe(false);
    expect(semanticEqual([1], [1, 2])).toBe(false);
    expect(semanticEqual({}, undefined)).toBe(true);
    expect(semanticEqual({ a: null }, {})).toBe(true);
  });

  it('compares Secret data by decoded bytes', () => {
    expect(leafEqual('aGVs\nbG8=', 'aGVsbG8=', { secretData: true })).toBe(true);
    expect(base64Equal('aGVsbG8=', 'aGVsbA==')).toBe(false);
    expect(stringDataToData({ a: 'hello', b: 5 })).toEqual({ a: 'aGVsbG8=', b: 'NQ==' });
  });
});
