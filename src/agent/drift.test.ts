import { describe, expect, it } from '@jest/globals';
import { createLogger } from '../common/logger.js';
import type { DriftConfig, DriftMessage } from '../protocol/messages.js';
import { DriftController, type DriftEventNote } from './drift.js';
import type { ObjectEvent, OnePlan } from './reconciler.js';
import type { Change } from './reconcile/types.js';
import type { KubeObject } from './kube/types.js';
import { LAST_APPLIED_ANNOTATION } from './reconcile/labels.js';

const key = 'apps/Deployment/default/nginx';
const id = 'Deployment/default/nginx';

function live(replicas: number, manager = 'kubectl-edit'): KubeObject {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: 'nginx',
      namespace: 'default',
      uid: 'u1',
      managedFields: [
        {
          manager: 'gitops-agent',
          operation: 'Update',
          time: '2026-11-25T10:00:00Z',
          fieldsV1: { 'f:spec': { 'f:template': {} } },
        },
        { manager, operation: 'Update', time: '2026-11-25T10:00:01Z', fieldsV1: { 'f:spec': { 'f:replicas': {} } } },
      ],
    },
    spec: { replicas },
  };
}

/** An engine double: Git says 2 replicas; `applyOne` puts them back. */
function fakeEngine() {
  let listener: ((e: ObjectEvent) => void) | undefined;
  const state = { replicas: 2 as number | undefined, applies: 0, ignoreSeen: [] as string[][] };
  return {
    state,
    emit(e: Partial<ObjectEvent> & { live?: KubeObject }) {
      listener?.({ unit: 'u', key, id, type: 'changed', ...e });
    },
    onObjectEvent(cb: (e: ObjectEvent) => void) {
      listener = cb;
      return () => {
        listener = undefined;
      };
    },
    planOne(_u: string, _k: string, { ignore = [] }: { ignore?: string[] } = {}): OnePlan {
      state.ignoreSeen.push(ignore);
      if (state.replicas === undefined) return { action: 'create', patch: [] };
      if (state.replicas === 2 || ignore.includes('/spec/replicas')) return { action: 'none', patch: [] };
      return {
        action: 'patch',
        patch: [
          { op: 'test', path: '/metadata/resourceVersion', value: '7' },
          { op: 'replace', path: '/spec/replicas', value: 2 },
        ],
      };
    },
    async applyOne(): Promise<Change> {
      state.applies++;
      const created = state.replicas === undefined;
      state.replicas = 2;
      return { id, action: created ? 'created' : 'configured' };
    },
  };
}

function setup(drift: DriftConfig, extra: { active?: boolean; busy?: () => boolean; now?: () => number } = {}) {
  const engine = fakeEngine();
  const reports: DriftMessage[] = [];
  const events: DriftEventNote[] = [];
  const ctl = new DriftController({
    engine,
    fieldManager: 'gitops-agent',
    logger: createLogger({ level: 'silent' }),
    settings: () => drift,
    isActive: () => extra.active ?? true,
    unitInfo: (u) => (u === 'u' ? { project: 'gitops-project', commit: 'a'.repeat(40) } : undefined),
    isBusy: extra.busy ?? (() => false),
    report: (m) => reports.push(m),
    recordEvent: async (_o, note) => {
      events.push(note);
    },
    fightPolicy: { threshold: 3, windowMs: 10_000, baseHoldMs: 60_000, capHoldMs: 60_000, calmMs: 60_000 },
    now: extra.now,
  });
  ctl.start();
  return { engine, reports, events, ctl };
}

const correct: DriftConfig = { mode: 'correct', ignore: [] };

describe('DriftController', () => {
  it('reverts a changed field and reports the patch, the manager who changed it and an Event', async () => {
    const { engine, reports, events, ctl } = setup(correct);
    engine.state.replicas = 5;
    engine.emit({ live: live(5) });
    await ctl.idle();
    expect(engine.state.replicas).toBe(2);
    expect(reports).toEqual([
      expect.objectContaining({
        type: 'drift',
        project: 'gitops-project',
        object: id,
        action: 'reverted',
        manager: 'kubectl-edit',
        patch: [
          { op: 'test', path: '/metadata/resourceVersion', value: '7' },
          { op: 'replace', path: '/spec/replicas', value: 2 },
        ],
      }),
    ]);
    expect(events).toEqual([
      expect.objectContaining({ reason: 'DriftReverted', message: expect.stringContaining('kubectl-edit') }),
    ]);
  });

  it('recreates a deleted object and says so', async () => {
    const { engine, reports, ctl } = setup(correct);
    engine.state.replicas = undefined;
    engine.emit({ type: 'deleted', live: live(2) });
    await ctl.idle();
    expect(engine.state.replicas).toBe(2);
    expect(reports.map((r) => r.action)).toEqual(['recreated']);
  });

  it('leaves an ignored field alone', async () => {
    const { engine, reports, ctl } = setup({
      mode: 'correct',
      ignore: [{ kind: 'Deployment', paths: ['/spec/replicas'] }],
    });
    engine.state.replicas = 5;
    engine.emit({ live: live(5) });
    await ctl.idle();
    expect(engine.state.applies).toBe(0);
    expect(engine.state.ignoreSeen).toEqual([['/spec/replicas']]);
    expect(reports).toEqual([]);
  });

  it('in detect mode reports each distinct drift once and writes nothing', async () => {
    const { engine, reports, events, ctl } = setup({ mode: 'detect', ignore: [] });
    engine.state.replicas = 5;
    engine.emit({ live: live(5) });
    await ctl.idle();
    engine.emit({ live: live(5) });
    await ctl.idle();
    expect(engine.state.applies).toBe(0);
    expect(reports.map((r) => r.action)).toEqual(['detected']);
    expect(events.map((e) => e.reason)).toEqual(['DriftDetected']);
  });

  it("never reports a Secret value, not even through kubectl's last-applied annotation", async () => {
    // Someone ran `kubectl apply` on a managed Secret: the annotation now holds its values in clear.
    const clear = JSON.stringify({ apiVersion: 'v1', kind: 'Secret', stringData: { password: 'hunter2' } });
    const secret: KubeObject = {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 's', namespace: 'default', annotations: { [LAST_APPLIED_ANNOTATION]: clear } },
      data: { password: 'aHVudGVyMg==' },
    };
    for (const mode of ['detect', 'correct'] as const) {
      const { engine, reports, events, ctl } = setup({ mode, ignore: [] });
      engine.planOne = () => ({
        action: 'patch',
        patch: [
          { op: 'test', path: '/metadata/resourceVersion', value: '7' },
          { op: 'replace', path: `/metadata/annotations/${LAST_APPLIED_ANNOTATION.replace('/', '~1')}`, value: clear },
          { op: 'add', path: '/metadata/annotations', value: { [LAST_APPLIED_ANNOTATION]: clear } },
          { op: 'replace', path: '/data/password', value: 'aHVudGVyMg==' },
        ],
      });
      engine.emit({ key: '/Secret/default/s', id: 'Secret/default/s', live: secret });
      await ctl.idle();
      expect(reports).toHaveLength(1);
      expect(JSON.stringify(reports)).not.toMatch(/hunter2|aHVudGVyMg/);
      expect(JSON.stringify(events)).not.toMatch(/hunter2|aHVudGVyMg/);
    }
  });

  it('does nothing when drift is off or this replica is not the leader', async () => {
    for (const ctx of [setup({ mode: 'off', ignore: [] }), setup(correct, { active: false })]) {
      ctx.engine.state.replicas = 5;
      ctx.engine.emit({ live: live(5) });
      await ctx.ctl.idle();
      expect(ctx.engine.state.applies).toBe(0);
    }
  });

  it('calls repeated reverts a fight, names the other manager and stops reverting during the hold', async () => {
    let now = 1_000_000;
    const { engine, reports, events, ctl } = setup(correct, { now: () => now });
    for (let i = 0; i < 10; i++) {
      engine.state.replicas = 5;
      engine.emit({ live: live(5, 'hpa-controller') });
      await ctl.idle();
      now += 100;
    }
    expect(engine.state.applies).toBe(3);
    expect(reports.map((r) => r.action)).toEqual(['reverted', 'reverted', 'fight']);
    expect(reports[2].manager).toBe('hpa-controller');
    expect(events[2].reason).toBe('DriftFight');
    ctl.stop();
  });

  it('holds events back while the unit applies and checks them once it is idle', async () => {
    let busy = true;
    const { engine, reports, ctl } = setup(correct, { busy: () => busy });
    engine.state.replicas = 5;
    engine.emit({ live: live(5) });
    await ctl.idle();
    expect(engine.state.applies).toBe(0);
    busy = false;
    ctl.unitIdle('u');
    await ctl.idle();
    expect(reports.map((r) => r.action)).toEqual(['reverted']);
  });

  it('masks Secret values in the reported patch', async () => {
    const { engine, reports, ctl } = setup(correct);
    engine.planOne = () => ({
      action: 'patch',
      patch: [{ op: 'replace', path: '/data/password', value: 'aHVudGVyMg==' }],
    });
    engine.emit({
      key: '/Secret/default/db',
      id: 'Secret/default/db',
      live: { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'db', namespace: 'default' } },
    });
    await ctl.idle();
    expect(JSON.stringify(reports)).not.toContain('aHVudGVyMg');
  });
});
