import { describe, expect, it } from '@jest/globals';
import { parseEnvFlag, readEnvFlag } from './env-flag.js';

describe('parseEnvFlag', () => {
  it.each([
    ['true', true],
    ['TRUE', true],
    ['1', true],
    ['yes', true],
    ['on', true],
    [' on ', true],
    ['false', false],
    ['False', false],
    ['0', false],
    ['no', false],
    ['off', false],
    [undefined, undefined],
    ['', undefined],
    ['  ', undefined],
    ['flase', null],
    ['2', null],
    ['enabled', null],
  ])('%j is %j', (value, expected) => {
    expect(parseEnvFlag(value)).toBe(expected);
  });
});

describe('readEnvFlag', () => {
  it('reads false as false (commander would have turned the option on) and names a word it does not know', () => {
    const problems: string[] = [];
    const env = { A: 'false', B: 'flase' };
    expect(readEnvFlag(env, 'A', (p) => problems.push(p))).toBe(false);
    expect(readEnvFlag(env, 'B', (p) => problems.push(p))).toBeUndefined();
    expect(readEnvFlag(env, 'C', (p) => problems.push(p))).toBeUndefined();
    expect(problems).toEqual(['B="flase": expected true or false (also 1/0, yes/no, on/off)']);
  });
});
