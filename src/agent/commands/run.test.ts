import { describe, expect, it } from '@jest/globals';
import { resolveRunOptions } from './run.js';

describe('resolveRunOptions', () => {
  it('lists every problem at once and never echoes a server URL that may hold credentials', () => {
    let message = '';
    try {
      resolveRunOptions({ serverUrl: 'wss://user:s3cret@ bad host/connect' }, {});
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toContain('--server-url is not a valid URL');
    expect(message).toContain('--token-file');
    expect(message).not.toContain('s3cret');
  });

  it('refuses plain ws:// unless --insecure-plaintext is given', () => {
    expect(() => resolveRunOptions({ serverUrl: 'ws://127.0.0.1:8443/api/v1/agent/connect', tokenFile: '/t' }, {})).toThrow(/plain ws:\/\//);
  });
});
