/**
 * `gitops-server serve` wiring: state dir → registry, Git source, fleet (config + desired state),
 * WebSocket hub and HTTP routes on one HTTPS (or, with --insecure-plaintext, HTTP) listener.
 * Nothing here decides anything; each part owns its rules.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../common/errors.js';
import { createLogger, type Logger } from '../common/logger.js';
import { CONNECT_PATH } from '../protocol/messages.js';
import { Fleet } from './fleet/index.js';
import { createHttpHandler } from './http.js';
import { parseTrustedProxies } from './client-address.js';
import { Hub } from './hub.js';
import { createServerMetrics, type ServerMetrics } from './metrics.js';
import type { ServeOptions } from './options.js';
import type { GitSource } from './ports.js';
import { Registry } from './registry.js';
import { loadTls } from './tls.js';

export interface GitSourceFactoryContext {
  logger: Logger;
  stateDir: string;
  pollIntervalMs: number;
  metrics: ServerMetrics;
}

export interface ServerDeps {
  /** Builds the Git source for the options (the CLI passes the real one; tests may pass their own). */
  gitSource: (options: ServeOptions['git'], context: GitSourceFactoryContext) => GitSource | Promise<GitSource>;
  logger?: Logger;
}

export interface RunningServer {
  /** `wss://host:port` (or `ws://`), with 127.0.0.1 for a wildcard listen address. */
  readonly baseUrl: string;
  /** Full WebSocket URL agents connect to. */
  readonly connectUrl: string;
  readonly port: number;
  /** Certificate agents should trust (self-signed mode: `<state-dir>/ca.crt`). */
  readonly caCertPath?: string;
  /** `http://host:port` of the --metrics-listen listener, when there is one. */
  readonly metricsUrl?: string;
  readonly fingerprint?: string;
  readonly registry: Registry;
  readonly hub: Hub;
  readonly fleet: Fleet;
  readonly metrics: ServerMetrics;
  close(): Promise<void>;
}

/** Starts the server; resolves once it listens. */
export async function startServer(options: Readonly<ServeOptions>, deps: ServerDeps): Promise<RunningServer> {
  const logger =
    deps.logger ?? createLogger({ level: options.logLevel, format: options.logFormat, name: 'gitops-server' });
  const metrics = createServerMetrics({ defaultMetrics: true });
  const registry = await Registry.open(options.stateDir, { logger: logger.child({ component: 'registry' }) });
  const wildcard = options.listen.host === '0.0.0.0' || options.listen.host === '::';
  const tls = await loadTls(options.tls, options.stateDir, wildcard ? [] : [options.listen.host]);
  const git = await deps.gitSource(options.git, {
    logger: logger.child({ component: 'git' }),
    stateDir: options.stateDir,
    pollIntervalMs: options.pollIntervalMs,
    metrics,
  });

  const fleet = new Fleet({ git, registry, logger: logger.child({ component: 'fleet' }), metrics });
  const trustedProxies = parseTrustedProxies(options.trustedProxies ?? []).proxies;
  const hub = new Hub({
    registry,
    provider: fleet,
    audience: options.audience,
    logger: logger.child({ component: 'hub' }),
    metrics,
    heartbeatMs: options.heartbeatMs,
    trustedProxies,
  });
  fleet.start(hub);

  let ready = false;
  const routes = {
    registry,
    metrics,
    logger: logger.child({ component: 'http' }),
    ready: () => ready,
    refresh: (project: string) => git.refresh(project),
    webhookSecret: options.webhookSecret,
    adminToken: options.adminToken,
    isConnected: (id: string) => hub.isConnected(id),
    trustedProxies,
  };
  // With --metrics-listen, /metrics and the status API move there, off the port agents reach.
  const handler = createHttpHandler({ ...routes, routes: options.metricsListen ? 'agents' : 'all' });
  const server = tls
    ? https.createServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, handler)
    : http.createServer(handler);
  server.on('upgrade', hub.handleUpgrade);
  server.on('checkContinue', handler.checkContinue);
  server.on('clientError', (_err, socket) => socket.destroy());
  await listen(server, options.listen);
  const port = (server.address() as AddressInfo).port;
  const opsHandler = options.metricsListen
    ? createHttpHandler({ ...routes, webhookSecret: undefined, routes: 'ops' })
    : undefined;
  const opsServer = opsHandler ? http.createServer(opsHandler) : undefined;
  if (opsServer && options.metricsListen) {
    opsServer.on('clientError', (_err, socket) => socket.destroy());
    await listen(opsServer, options.metricsListen).catch((err: unknown) => {
      server.close();
      throw err;
    });
  }
  const metricsUrl = opsServer ? urlOf('http', opsServer.address() as AddressInfo) : undefined;
  const host = wildcard ? '127.0.0.1' : options.listen.host;
  const baseUrl = `${tls ? 'wss' : 'ws'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  ready = true;
  logger.info(
    {
      listen: `${options.listen.host}:${port}`,
      connect: baseUrl + CONNECT_PATH,
      tls: options.tls.mode,
      fingerprint: tls?.fingerprint,
      caCert: options.tls.mode === 'self-signed' ? tls?.certPath : undefined,
      metrics: metricsUrl,
      agents: registry.active().length,
    },
    'server listening',
  );
  if (tls?.created === 'was-a-ca')
    logger.warn(
      { caCert: tls.certPath },
      'self-signed certificate replaced: the old one was a CA with its key beside it; agents must trust the new caCert',
    );
  if (!tls) logger.warn('TLS is off (--insecure-plaintext): agent JWTs and manifests travel in clear text');

  let closing: Promise<void> | undefined;
  return {
    baseUrl,
    connectUrl: baseUrl + CONNECT_PATH,
    port,
    caCertPath: tls?.certPath,
    fingerprint: tls?.fingerprint,
    metricsUrl,
    registry,
    hub,
    fleet,
    metrics,
    close() {
      closing ??= (async () => {
        ready = false;
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        const opsClosed = new Promise<void>((resolve) => (opsServer ? opsServer.close(() => resolve()) : resolve()));
        await hub.close();
        server.closeAllConnections?.();
        opsServer?.closeAllConnections();
        await Promise.all([closed, opsClosed]);
        handler.close();
        fleet.close();
        await git.close().catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'git source close failed'));
        await registry.close();
        logger.info('server stopped');
      })();
      return closing;
    },
  };
}

function listen(server: http.Server, at: { host: string; port: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function urlOf(scheme: string, addr: AddressInfo): string {
  return `${scheme}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
}
