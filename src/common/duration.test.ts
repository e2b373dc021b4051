import { describe, expect, it } from '@jest/globals';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it.each([
    ['3600s', 3_600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['15', 15_000],
    [2, 2000],
  ])('reads %p as %p ms', (input, expected) => {
    expect(parseDuration(input)).toBe(expected);
  });

  it.each(['', 'abc', '10x', '5s garbage', '-1s'])('rejects %p with a message that shows an example', (input) => {
    expect(() => parseDuration(input)).toThrow(/30s/);
  });
});

describe('formatDuration', () => {
  it('keeps short durations in milliseconds and long ones in seconds', () => {
    expect(formatDuration(12.4)).toBe('12ms');
    expect(formatDuration(1500)).toBe('1.50s');
  });
});
