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
    expect(() =>
      resolveRunOptions({ serverUrl: 'ws://127.0.0.1:8443/api/v1/agent/connect', tokenFile: '/t' }, {}),
    ).toThrow(/plain ws:\/\//);
  });

  it('reads GITOPS_AGENT_INSECURE_PLAINTEXT as a boolean: "false" stays off and an unknown word is named', () => {
    const ws = { serverUrl: 'ws://127.0.0.1:8443/api/v1/agent/connect', tokenFile: '/t' };
    expect(() => resolveRunOptions(ws, { GITOPS_AGENT_INSECURE_PLAINTEXT: 'false' })).toThrow(/plain ws:\/\//);
    expect(() => resolveRunOptions(ws, { GITOPS_AGENT_INSECURE_PLAINTEXT: 'flase' })).toThrow(
      /GITOPS_AGENT_INSECURE_PLAINTEXT="flase": expected true or false/,
    );
  });
});
