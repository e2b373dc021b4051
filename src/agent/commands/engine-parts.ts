/**
 * Builds what a reconcile engine works with (EngineParts) around one KubeClient its caller owns:
 * discovery (loading starts at once: the first sync needs it), the OpenAPI reader, the watch
 * caches selecting our inventory label, the per-namespace pod watches health starts on demand,
 * and the normal forms learnt in earlier runs. Used by
 * `gitops-agent run` (whose one client also serves leader election and Events); `openEngine` adds
 * a client of its own for `apply`, `diff` and the engine's integration tests.
 */
import type { Logger } from '../../common/logger.js';
import { silentLogger } from '../../common/logger.js';
import { KubeClient } from '../kube/client.js';
import type { CredentialSource } from '../kube/credentials.js';
import { Discovery } from '../kube/discovery.js';
import { OpenApi } from '../kube/openapi.js';
import { PodWatches, WatchCache } from '../kube/cache.js';
import { Engine, type EngineOptions, type EngineParts } from '../reconcile/engine.js';
import { KnownNormal } from '../reconcile/known-normal.js';
import { INVENTORY_LABEL } from '../reconcile/labels.js';

export interface EnginePartsOptions {
  logger?: Logger;
  /** Folder to persist learnt normal forms and OpenAPI documents across restarts. */
  stateDir?: string;
}

export async function openEngineParts(client: KubeClient, options: EnginePartsOptions = {}): Promise<EngineParts> {
  const log = options.logger ?? silentLogger();
  const discovery = new Discovery(client);
  // Fetched while the state dir is read and the caller gathers its files (a failure here is
  // retried by the sync that needs it).
  discovery.ensureLoaded().catch(() => undefined);
  const openapi = new OpenApi(client, options.stateDir, log.child({ component: 'openapi' }));
  const caches = new WatchCache(client, INVENTORY_LABEL, log);
  // Pods carry no inventory label: watched one namespace at a time, only while health needs them.
  const pods = new PodWatches(client, log.child({ component: 'pods' }));
  const known = await KnownNormal.open(options.stateDir);
  return { client, discovery, openapi, caches, known, pods };
}

/** An engine with a client of its own (one-shot commands, tests): `close()` stops the engine, then the client. */
export interface OwnedEngine {
  engine: Engine;
  client: KubeClient;
  close(): void;
}

export async function openEngine(
  credentials: CredentialSource,
  options: EnginePartsOptions & EngineOptions & { fieldManager?: string } = {},
): Promise<OwnedEngine> {
  const client = await KubeClient.create(credentials, { fieldManager: options.fieldManager });
  try {
    const engine = Engine.create(await openEngineParts(client, options), options);
    return {
      engine,
      client,
      close: () => {
        engine.close();
        client.close();
      },
    };
  } catch (err) {
    client.close();
    throw err;
  }
}
