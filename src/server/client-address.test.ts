import { describe, expect, it } from '@jest/globals';
import { clientAddress, normalizeAddress, parseTrustedProxies } from './client-address.js';

const trusted = (...entries: string[]) => {
  const { proxies, problems } = parseTrustedProxies(entries);
  expect(problems).toEqual([]);
  return proxies;
};

describe('parseTrustedProxies', () => {
  it('takes addresses and networks of both families', () => {
    const p = trusted('127.0.0.1', '10.0.0.0/8', 'fd00::/8', '::1');
    expect(p.size).toBe(4);
    expect(['127.0.0.1', '::ffff:127.0.0.1', '10.1.2.3', 'fd12::1', '::1'].map((a) => p.has(a))).toEqual([
      true,
      true,
      true,
      true,
      true,
    ]);
    expect(['127.0.0.2', '11.0.0.1', 'fe80::1', 'not-an-ip'].map((a) => p.has(a))).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });

  it.each(['10.0.0.0/33', 'proxy.example.com', '10.0.0.1/8/1', '1.2.3', '::1/129', '10.0.0.0/x'])(
    'names %j as a problem',
    (entry) => {
      const { problems } = parseTrustedProxies([entry]);
      expect(problems).toHaveLength(1);
      expect(problems[0]).toContain('--trusted-proxy');
    },
  );
});

describe('clientAddress', () => {
  const proxy = trusted('127.0.0.1', '10.0.0.0/8');
  it.each([
    [
      'no trusted proxies: the peer, X-Forwarded-For ignored',
      '203.0.113.9',
      '198.51.100.1',
      parseTrustedProxies([]).proxies,
      '203.0.113.9',
    ],
    ['an untrusted peer: its own address, whatever it forwards', '203.0.113.9', '198.51.100.1', proxy, '203.0.113.9'],
    ['a trusted peer: the forwarded client', '127.0.0.1', '198.51.100.1', proxy, '198.51.100.1'],
    ['a trusted peer, mapped IPv4', '::ffff:127.0.0.1', '198.51.100.1', proxy, '198.51.100.1'],
    [
      'the right-most untrusted hop, not what the client wrote',
      '127.0.0.1',
      '6.6.6.6, 198.51.100.1, 10.0.0.5',
      proxy,
      '198.51.100.1',
    ],
    ['several headers joined', '127.0.0.1', ['6.6.6.6', '198.51.100.2'], proxy, '198.51.100.2'],
    ['ports on hops', '127.0.0.1', '198.51.100.3:4444', proxy, '198.51.100.3'],
    ['a garbage hop: the last trustworthy one', '127.0.0.1', 'garbage, 10.0.0.7', proxy, '10.0.0.7'],
    ['all hops trusted: the left-most', '127.0.0.1', '10.0.0.8, 10.0.0.9', proxy, '10.0.0.8'],
    ['no header from a trusted peer: the peer', '127.0.0.1', undefined, proxy, '127.0.0.1'],
  ])('%s', (_name, peer, xff, proxies, expected) => {
    expect(clientAddress(peer, xff, proxies)).toBe(expected);
  });

  it('reads a bounded part of a huge header', () => {
    const xff = `${'1.1.1.1, '.repeat(100_000)}198.51.100.4`;
    expect(clientAddress('127.0.0.1', xff, proxy)).toBe('198.51.100.4');
  });

  it('normalizes IPv4-mapped IPv6 only', () => {
    expect(normalizeAddress('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(normalizeAddress('::1')).toBe('::1');
  });
});
