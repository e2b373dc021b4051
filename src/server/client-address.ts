/**
 * The client address of a request, for failure lockouts and logs. By default it is the TCP peer.
 * Behind a TLS-terminating proxy every agent shares the proxy's address, so with
 * `--trusted-proxy CIDR_OR_IP` the address is taken from `X-Forwarded-For` instead, but only when
 * the peer itself is a trusted proxy: the right-most hop that is not a trusted proxy is the client
 * (hops to its left were written by the client and prove nothing). Pure; unit-tested.
 */
import { BlockList, isIP } from 'node:net';

/** Longest X-Forwarded-For value looked at, and most hops: a header is tenant input. */
const MAX_FORWARDED_LENGTH = 4096;
const MAX_HOPS = 32;

/** `::ffff:10.0.0.1` (an IPv4 peer on a dual-stack socket) as `10.0.0.1`; otherwise as given. */
export function normalizeAddress(address: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  return mapped ? mapped[1] : address;
}

/** A set of trusted proxy addresses and networks. */
export interface TrustedProxies {
  has(address: string): boolean;
  readonly size: number;
}

/**
 * Parses `--trusted-proxy` entries (`10.0.0.1`, `10.0.0.0/8`, `fd00::/8`); each entry that is not
 * an address or network is a problem naming it.
 */
export function parseTrustedProxies(entries: readonly string[]): { proxies: TrustedProxies; problems: string[] } {
  const list = new BlockList();
  const problems: string[] = [];
  let size = 0;
  for (const raw of entries) {
    const entry = raw.trim();
    if (!entry) continue;
    const [addr, prefixText, extra] = entry.split('/');
    const family = isIP(addr);
    const max = family === 4 ? 32 : 128;
    const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
    if (family === 0 || extra !== undefined || !(prefix >= 0 && prefix <= max)) {
      problems.push(
        `--trusted-proxy: "${entry.slice(0, 60)}" is not an IP address or CIDR network (examples: 10.0.0.1, 10.0.0.0/8, fd00::/8)`,
      );
      continue;
    }
    const type = family === 4 ? 'ipv4' : 'ipv6';
    if (prefix === max) list.addAddress(addr, type);
    else list.addSubnet(addr, prefix, type);
    size++;
  }
  return {
    problems,
    proxies: {
      size,
      has(address: string): boolean {
        const a = normalizeAddress(address);
        const family = isIP(a);
        return family !== 0 && list.check(a, family === 4 ? 'ipv4' : 'ipv6');
      },
    },
  };
}

/**
 * The client's address: the peer, or (when the peer is a trusted proxy) the right-most
 * X-Forwarded-For hop that is not a trusted proxy. When every hop is trusted, the left-most; when
 * a hop does not parse as an address, the hop to its right (the last trustworthy one).
 */
export function clientAddress(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  proxies: TrustedProxies,
): string {
  const direct = normalizeAddress(peer ?? 'unknown');
  if (proxies.size === 0 || forwardedFor === undefined || !proxies.has(direct)) return direct;
  const header = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).slice(-MAX_FORWARDED_LENGTH);
  const hops = header
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean)
    .slice(-MAX_HOPS);
  let client = direct;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalizeAddress(stripPort(hops[i]));
    if (isIP(hop) === 0) return client;
    client = hop;
    if (!proxies.has(hop)) return hop;
  }
  return client;
}

/** `1.2.3.4:5678` and `[::1]:5678` (some proxies add ports) without the port. */
function stripPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed) return bracketed[1];
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(hop);
  return v4 ? v4[1] : hop;
}
