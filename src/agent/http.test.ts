import { describe, expect, it } from '@jest/globals';
import { parseListen } from './http.js';

describe('parseListen', () => {
  it.each([
    ['0.0.0.0:8080', { host: '0.0.0.0', port: 8080 }],
    ['127.0.0.1:0', { host: '127.0.0.1', port: 0 }],
    [':9090', { host: '0.0.0.0', port: 9090 }],
    ['8080', { host: '0.0.0.0', port: 8080 }],
    ['[::]:8080', { host: '::', port: 8080 }],
    ['localhost:80', { host: 'localhost', port: 80 }],
  ])('reads %s', (text, expected) => {
    expect(parseListen(text)).toEqual(expected);
  });

  it.each(['', 'host:', 'host:99999', 'a:b:c', 'http://x:1'])('refuses %p', (text) => {
    expect(parseListen(text)).toBeUndefined();
  });
});
