/**
 * The real `gitops-server serve` code in this test process, as e2e/server tests start it: TLS with
 * a self-signed CA (returned as `ca`), the real Git source against a test Git server, a 60 s poll
 * (webhooks or refresh move things), a 1 s heartbeat, and every JSON log line kept in `logLines`.
 */
import { readFile, rm } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/common/logger.js';
import { gitSourceForServe } from '../../src/server/git-factory.js';
import { resolveServeOptions } from '../../src/server/options.js';
import { startServer, type RunningServer } from '../../src/server/serve.js';
import type { TestRepo } from '../harness/git-repo.js';
import type { GitServer } from '../harness/git-server.js';
import type { TestClient } from './client.js';

export interface InProcessServer {
  server: RunningServer;
  /** PEM of the server's CA, for clients to trust. */
  ca: string;
  /** The server's log, one JSON line per entry, as written. */
  logLines: string[];
}

export async function startInProcessServer(options: {
  stateDir: string;
  gitBaseUrl: string;
  webhookSecretFile?: string;
  adminTokenFile?: string;
}): Promise<InProcessServer> {
  const serveOptions = resolveServeOptions({
    listen: '127.0.0.1:0',
    tlsSelfSigned: true,
    pollInterval: '60s',
    heartbeatInterval: '1s',
    logLevel: 'debug',
    ...options,
  });
  const logLines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _e, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  const server = await startServer(serveOptions, {
    gitSource: gitSourceForServe,
    logger: createLogger({ level: 'debug', destination }),
  });
  return { server, ca: await readFile(server.caCertPath!, 'utf8'), logLines };
}

/** Tears down what a suite started, in order; parts that never started are skipped. */
export async function stopSuite(parts: {
  clients: readonly TestClient[];
  server?: RunningServer;
  gitServer?: GitServer;
  repos: ReadonlyArray<TestRepo | undefined>;
  work?: string;
}): Promise<void> {
  for (const c of parts.clients) c.ws.terminate();
  await parts.server?.close();
  await parts.gitServer?.stop();
  for (const repo of parts.repos) await repo?.dispose();
  if (parts.work) await rm(parts.work, { recursive: true, force: true });
}
