/**
 * A TCP forwarder: what kube-proxy would do for a pod that must reach a service listening on the
 * host's loopback (the test API server, gitops-server), which a pod's own network namespace cannot
 * reach. It listens on the node's IP, which pods reach through their bridge's gateway, and pipes
 * each connection to the loopback address. TLS passes through untouched: the pod checks the real
 * server's certificate. `close()` ends every connection it carries.
 */
import net from 'node:net';

export interface Forwarder {
  /** `host:port` it listens on. */
  readonly address: string;
  close(): Promise<void>;
}

export async function forwardTcp(
  listen: { host: string; port: number },
  target: { host: string; port: number },
): Promise<Forwarder> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((inbound) => {
    const outbound = net.connect(target.port, target.host);
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      // Either side failing ends both; the error itself is the client's to see (a reset).
      s.on('error', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return {
    address: `${listen.host}:${listen.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
