/**
 * The agent runtime's wiring between the server, the state dir and the sync loop, with a recording
 * engine double (the real engine is covered by e2e/engine and run.test.ts; its health follower
 * double says each commit's objects are as `health` has them) and a loopback WebSocket server
 * speaking the protocol.
 */
import { afterEach, describe, expect, it } from '@jest/globals';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { createLogger } from '../../src/common/logger.js';
import { signAgentJwt } from '../../src/protocol/jwt.js';
import { generateToken } from '../../src/protocol/token.js';
import {
  CONNECT_PATH,
  decodeAgentMessage,
  encodeMessage,
  type AgentMessage,
  type ServerMessage,
} from '../../src/protocol/messages.js';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { AgentRuntime } from '../../src/agent/runtime.js';
import { StateStore, type DesiredState } from '../../src/agent/state.js';
import type { HealthFollower, ObjectEvent, Reconciler } from '../../src/agent/reconciler.js';
import type { SyncUnit } from '../../src/agent/reconcile/types.js';
import type { ChangeSet } from '../../src/agent/reconcile/types.js';
import type { HealthReport, ObjectHealthEntry } from '../../src/agent/health/types.js';
import type { EventNote, EventTarget } from '../../src/agent/events.js';
import type { KubeObject } from '../../src/agent/kube/types.js';
import type { LiveObjects } from '../../src/agent/runtime.js';
import { waitFor } from '../harness/wait.js';

const token = generateToken();
const config: DesiredState['config'] = {
  id: 'p1',
  ref: {},
  defaultNamespace: 'default',
  paths: [{ glob: '/**/*.yaml' }],
  reconcileTimeoutMs: 60_000,
  dryRunStrategy: 'none',
  prune: true,
  pruneTimeoutMs: 60_000,
  prunePropagationPolicy: 'foreground',
  inventoryPolicy: 'must_match',
};
const desired = (project: string, c: string): DesiredState => ({
  project,
  commit: c.repeat(40),
  digest: `d-${c}`,
  config: { ...config, id: project },
  files: [{ path: 'a.yaml', content: c }],
});

type EngineDouble = Reconciler & HealthFollower & LiveObjects & { synced: SyncUnit[] };

/**
 * Syncs succeed at once; every commit's objects are then `objects` (the health follower's
 * report: degraded when one is failed, healthy when all are current), found in the cache as a
 * Deployment with a uid.
 */
function recordingEngine(objects: ObjectHealthEntry[] = []): EngineDouble {
  const synced: SyncUnit[] = [];
  const reports = new Map<string, HealthReport>();
  const listeners = new Set<(r: HealthReport) => void>();
  const settled = (unit: SyncUnit): HealthReport => ({
    unit: unit.name,
    commit: unit.commit,
    result: objects.some((o) => o.state === 'failed') ? 'degraded' : 'healthy',
    objects,
    waitedMs: 5,
  });
  return {
    synced,
    async sync(unit): Promise<ChangeSet> {
      synced.push(unit);
      reports.set(unit.name, { unit: unit.name, commit: unit.commit, result: 'progressing', objects: [] });
      // The follower sees the objects settle just after the apply.
      setTimeout(() => {
        const r = settled(unit);
        reports.set(unit.name, r);
        for (const l of listeners) l(r);
      }, 5);
      return {
        unit: unit.name,
        commit: unit.commit,
        changes: [{ id: 'ConfigMap/default/a', action: 'configured' }],
        errors: [],
        durationMs: 1,
        dryRun: false,
      };
    },
    onObjectEvent: (_cb: (e: ObjectEvent) => void) => () => undefined,
    planOne: () => undefined,
    applyOne: async () => ({ id: 'x', action: 'unchanged' }),
    close: () => undefined,
    waitHealth: (unit, { signal }) =>
      new Promise((resolve) => {
        const done = (r: HealthReport): void => {
          if (r.unit === unit && r.result !== 'progressing') resolve(r);
        };
        listeners.add(done);
        signal?.addEventListener('abort', () => resolve({ ...reports.get(unit)!, result: 'progressing' }));
      }),
    health: (unit) => reports.get(unit),
    onHealthChange: (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    forget: (unit) => void reports.delete(unit),
    liveObject: (_unit, id): KubeObject | undefined => {
      const [kind, namespace, name] = id.split('/');
      return { apiVersion: 'apps/v1', kind, metadata: { namespace, name, uid: `uid-${name}` } };
    },
  };
}

let cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function fixture(onSession: (ws: WebSocket) => void, objects?: ObjectHealthEntry[]) {
  const received: AgentMessage[] = [];
  const wss = new WebSocketServer({ noServer: true });
  const srv = http.createServer();
  srv.on('upgrade', (req, socket, head) =>
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', (d) => {
        const m = decodeAgentMessage(d.toString());
        if (m.ok) received.push(m.message);
      });
      onSession(ws);
    }),
  );
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const dir = await mkdtemp(path.join(tmpdir(), 'agent-runtime-'));
  cleanups.push(async () => {
    for (const ws of wss.clients) ws.terminate();
    await new Promise((r) => srv.close(r));
    await rm(dir, { recursive: true, force: true });
  });
  const store = new StateStore(dir);
  const engine = recordingEngine(objects);
  const events: Array<{ target: EventTarget; note: EventNote }> = [];
  const lines: string[] = [];
  const logger = createLogger({
    level: 'info',
    destination: {
      write: (l: string) => {
        lines.push(l);
        return true;
      },
    } as unknown as NodeJS.WritableStream,
  });
  const make = (): AgentRuntime => {
    const rt = new AgentRuntime({
      engine,
      store,
      logger,
      metrics: new AgentMetrics({ defaultMetrics: false }),
      fieldManager: 'gitops-agent',
      unitName: (p) => `unit-${p}`,
      session: {
        url: `ws://127.0.0.1:${(srv.address() as AddressInfo).port}${CONNECT_PATH}`,
        signJwt: () => signAgentJwt(token, { audience: 'a' }),
        agentVersion: 't',
        reconnect: { baseMs: 20, capMs: 50 },
      },
      resyncIntervalMs: 0,
      recordEvent: async (target, note) => {
        events.push({ target, note });
      },
    });
    cleanups.push(() => rt.stop());
    return rt;
  };
  return { received, store, engine, logger, lines, make, events };
}

const send = (ws: WebSocket, m: ServerMessage): void => ws.send(encodeMessage(m));

describe('agent runtime', () => {
  it('enforces the persisted desired state at start and names its commit in hello so the server sends only news', async () => {
    const f = await fixture(() => undefined);
    await f.store.init();
    await f.store.saveDesired(desired('p1', 'a'));
    const rt = f.make();
    await rt.start();
    expect(rt.readiness().ready).toBe(true);
    await waitFor(() => f.engine.synced.length === 1, 3000, 'the restored state applied');
    expect(f.engine.synced[0]).toMatchObject({ name: 'unit-p1', namespace: 'default', commit: 'a'.repeat(40) });
    await waitFor(() => f.received.length > 0, 3000, 'hello');
    expect(f.received[0]).toMatchObject({ type: 'hello', applied: { p1: { commit: 'a'.repeat(40), digest: 'd-a' } } });
    await waitFor(() => f.received.some((m) => m.type === 'status'), 3000, 'status flushed after connecting');
  });

  it('applies the log level from config.yaml to the loggers its parts made at start-up', async () => {
    let sessions = 0;
    const f = await fixture((ws) => {
      if (sessions++ > 0) return;
      send(ws, {
        type: 'config',
        settings: { logLevel: 'debug', drift: { mode: 'correct', ignore: [] } },
        projects: [],
        errors: [],
      });
      // Drop the first session once the level is applied: the session's own logger says it reconnects, at debug.
      setTimeout(() => ws.terminate(), 100);
    });
    const rt = f.make();
    await rt.start();
    await waitFor(
      () => f.lines.some((l) => l.includes('"msg":"reconnecting"')),
      5000,
      'a debug line from the session logger',
    );
    const line = JSON.parse(f.lines.find((l) => l.includes('"msg":"reconnecting"'))!) as {
      level: string;
      component: string;
    };
    expect(line).toMatchObject({ level: 'debug', component: 'session' });
  });

  it('persists each desired state before applying it, follows the log level from config.yaml and forgets dropped projects', async () => {
    const f = await fixture((ws) => {
      const d1 = desired('p1', 'b');
      send(ws, {
        type: 'config',
        settings: { logLevel: 'debug', drift: { mode: 'correct', ignore: [] } },
        projects: ['p1', 'p2'],
        errors: [],
      });
      send(ws, {
        type: 'desired',
        project: 'p1',
        commit: d1.commit,
        digest: d1.digest,
        config: d1.config,
        files: d1.files,
      });
      send(ws, {
        type: 'desired',
        project: 'p2',
        commit: 'c'.repeat(40),
        digest: 'd-c',
        config: { ...config, id: 'p2' },
        files: [],
      });
      setTimeout(
        () =>
          send(ws, {
            type: 'config',
            settings: { drift: { mode: 'correct', ignore: [] } },
            projects: ['p1'],
            errors: [],
          }),
        200,
      );
    });
    const rt = f.make();
    await rt.start();
    await waitFor(
      async () => (await f.store.load()).projects.map((p) => p.project).join() === 'p1' && f.engine.synced.length >= 2,
      5000,
      'p2 forgotten',
    );
    expect(f.engine.synced.map((u) => u.name).sort()).toEqual(['unit-p1', 'unit-p2']);
    expect((await f.store.load()).projects[0].commit).toBe('b'.repeat(40));
    // logLevel went to debug with the first config and back to the start-up level when the key disappeared.
    await waitFor(
      () => f.logger.level === 'info' && f.lines.filter((l) => l.includes('"msg":"log level changed"')).length === 2,
      3000,
      'log level back to info',
    );
    expect(
      f.lines
        .filter((l) => l.includes('"msg":"log level changed"'))
        .map((l) => (JSON.parse(l) as { logLevel: string }).logLevel),
    ).toEqual(['debug', 'info']);
    expect(rt.loop.unitInfo('unit-p2')).toBeUndefined();
  });

  it("sends a commit's health after its status to a version-2 server and records an Event on the object that failed", async () => {
    const failed: ObjectHealthEntry = {
      id: 'Deployment/default/web',
      state: 'failed',
      reason: 'ImagePullBackOff',
      message: 'ImagePullBackOff: Back-off pulling image "registry.invalid/web:1"',
    };
    const f = await fixture(
      (ws) => {
        const d = desired('p1', 'e');
        send(ws, {
          type: 'config',
          protocolVersion: 2,
          settings: { drift: { mode: 'correct', ignore: [] } },
          projects: ['p1'],
          errors: [],
        });
        send(ws, {
          type: 'desired',
          project: 'p1',
          commit: d.commit,
          digest: d.digest,
          config: d.config,
          files: d.files,
        });
      },
      [failed, { id: 'ConfigMap/default/a', state: 'current', reason: 'Exists', message: '' }],
    );
    const rt = f.make();
    await rt.start();
    await waitFor(
      () => f.received.some((m) => m.type === 'health' && m.result === 'degraded'),
      5000,
      'the degraded health',
    );
    const reports = f.received.filter((m) => m.type === 'status' || m.type === 'health');
    expect(reports.map((m) => `${m.type} ${m.result}`)).toEqual([
      'status applied',
      'health progressing',
      'health degraded',
    ]);
    expect(reports[2]).toMatchObject({ project: 'p1', commit: 'e'.repeat(40), digest: 'd-e', waitedMs: 5 });
    expect(f.events).toEqual([
      {
        target: {
          apiVersion: 'apps/v1',
          identity: { group: 'apps', kind: 'Deployment', namespace: 'default', name: 'web' },
          uid: 'uid-web',
        },
        note: {
          reason: 'HealthFailed',
          type: 'Warning',
          message: `Failed after applying commit eeeeeeeeeeee: ${failed.message}`,
        },
      },
    ]);
    const degraded = f.lines.map((l) => JSON.parse(l) as { msg: string }).find((l) => l.msg === 'commit degraded');
    expect(degraded).toMatchObject({
      project: 'p1',
      commit: 'e'.repeat(40),
      waitedMs: 5,
      notCurrent: [`Deployment/default/web failed: ${failed.message}`],
    });
  });
});
