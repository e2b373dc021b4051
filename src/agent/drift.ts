/**
 * Drift correction between syncs. The engine's watches report every change to a managed object
 * that did not come from our own writes; for each, this controller re-plans the object against Git
 * (minus the `drift.ignore` fields) and, by `drift.mode`:
 * - `correct`: reverts with the engine's JSON patch (recreates a deleted object), then reports a
 *   `drift` message (object, patch with Secret values masked, the field manager who made the change
 *   from managedFields), logs it and records a Kubernetes Event on the object (reason DriftReverted);
 * - `detect`: reports, logs and records an Event (reason DriftDetected) once per distinct drift,
 *   and writes nothing;
 * - `off`: does nothing.
 * An object reverted again and again is a fight with another controller: it is reported as one
 * (naming that manager) and each further revert waits out a hold that doubles up to a cap
 * (drift-policy.ts), so a fighting controller cannot make us hammer the API server.
 * Events for one object are coalesced (one plan in flight per object, the newest event wins) and
 * held back while the object's unit is applying: the apply reconciles it anyway, and the held keys
 * are re-checked when the unit goes idle.
 */
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import type { DriftConfig, DriftMessage } from '../protocol/messages.js';
import {
  DEFAULT_FIGHT_POLICY,
  driftManager,
  holdRemaining,
  NO_FIGHT,
  recordRevert,
  type FightPolicy,
  type FightState,
} from './drift-policy.js';
import {
  identityFromKey,
  identityOf,
  ignoredPointers,
  withoutIgnored,
  type ObjectIdentity,
} from './reconcile/ignore.js';
import { maskSecretPatch } from './reconcile/report.js';
import type { AgentMetrics } from './metrics.js';
import type { ObjectEvent, Reconciler } from './reconciler.js';

/** What a Kubernetes Event about drift says. */
export interface DriftEventNote {
  reason: 'DriftReverted' | 'DriftDetected' | 'DriftFight';
  type: 'Normal' | 'Warning';
  message: string;
}

/** Records a Kubernetes Event on an object (events.ts); failures are the recorder's to log. */
export type EventSink = (
  object: { apiVersion?: string; identity: ObjectIdentity; uid?: string },
  note: DriftEventNote,
) => Promise<void>;

export interface DriftControllerOptions {
  engine: Pick<Reconciler, 'onObjectEvent' | 'planOne' | 'applyOne'>;
  /** Our field manager, never named as the one who drifted an object. */
  fieldManager: string;
  logger: Logger;
  metrics?: AgentMetrics;
  /** Current drift settings (from the latest config). */
  settings: () => DriftConfig;
  /** Only the Lease holder corrects. */
  isActive: () => boolean;
  /** Project and commit a unit enforces; undefined for units we do not know. */
  unitInfo: (unit: string) => { project: string; commit: string } | undefined;
  /** True while the unit is applying. */
  isBusy: (unit: string) => boolean;
  report: (message: DriftMessage) => void;
  recordEvent?: EventSink;
  fightPolicy?: FightPolicy;
  now?: () => number;
}

interface KeyState {
  event: ObjectEvent;
  /** A check is running; `again` asks it to run once more with the newest event. */
  running: boolean;
  again: boolean;
  fight: FightState;
  holdTimer?: NodeJS.Timeout;
  /** Signature of the last drift reported in detect mode (report each distinct drift once). */
  detected?: string;
}

export class DriftController {
  private readonly opts: DriftControllerOptions;
  private readonly keys = new Map<string, KeyState>();
  /** Keys whose events arrived while their unit was applying, by unit. */
  private readonly held = new Map<string, Set<string>>();
  private readonly inflight = new Set<Promise<void>>();
  private unsubscribe?: () => void;
  private stopped = false;

  constructor(options: DriftControllerOptions) {
    this.opts = options;
  }

  start(): void {
    this.unsubscribe ??= this.opts.engine.onObjectEvent((e) => this.onEvent(e));
  }

  stop(): void {
    this.stopped = true;
    this.unsubscribe?.();
    for (const k of this.keys.values()) clearTimeout(k.holdTimer);
  }

  /** A unit finished applying: re-check the objects whose events were held back meanwhile. */
  unitIdle(unit: string): void {
    const keys = this.held.get(unit);
    if (!keys) return;
    this.held.delete(unit);
    for (const key of keys) this.schedule(key);
  }

  /** Resolves when no check is running (tests). */
  async idle(): Promise<void> {
    while (this.inflight.size) await Promise.all([...this.inflight]);
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  private onEvent(e: ObjectEvent): void {
    if (this.stopped) return;
    const state = this.keys.get(e.key);
    if (state) state.event = e;
    else this.keys.set(e.key, { event: e, running: false, again: false, fight: NO_FIGHT });
    this.schedule(e.key);
  }

  private schedule(key: string): void {
    const state = this.keys.get(key);
    if (!state || this.stopped) return;
    if (state.running) {
      state.again = true;
      return;
    }
    state.running = true;
    const p = (async () => {
      try {
        do {
          state.again = false;
          await this.check(key, state);
        } while (state.again && !this.stopped);
      } catch (err) {
        this.opts.logger.error({ object: state.event.id, err: errorMessage(err) }, 'drift check failed');
      } finally {
        state.running = false;
      }
    })();
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async check(key: string, state: KeyState): Promise<void> {
    const e = state.event;
    const settings = this.opts.settings();
    if (settings.mode === 'off' || !this.opts.isActive()) return;
    const info = this.opts.unitInfo(e.unit);
    if (!info) return;
    if (this.opts.isBusy(e.unit)) {
      let set = this.held.get(e.unit);
      if (!set) this.held.set(e.unit, (set = new Set()));
      set.add(key);
      return;
    }
    const started = this.now();
    const wait = holdRemaining(state.fight, started);
    if (wait > 0) {
      // In a fight: look again when the hold ends (one timer per object, never a busy loop).
      if (!state.holdTimer) {
        state.holdTimer = setTimeout(() => {
          state.holdTimer = undefined;
          this.schedule(key);
        }, wait);
        state.holdTimer.unref();
      }
      return;
    }

    const identity = e.live ? identityOf(e.live) : identityFromKey(key);
    if (!identity) return;
    const ignore = ignoredPointers(settings.ignore, identity);
    const plan = await this.opts.engine.planOne(e.unit, key, { ignore });
    if (!plan || plan.action === 'none') {
      state.detected = undefined;
      return;
    }
    const patch = withoutIgnored(plan.patch, ignore);
    if (plan.action === 'patch' && patch.length === 0) return;

    const manager =
      e.type === 'deleted' || plan.action === 'create'
        ? undefined
        : driftManager(e.live?.metadata.managedFields, this.opts.fieldManager, patch);
    const masked = maskSecretPatch(identity.kind, patch);
    const log = this.opts.logger.child({ project: info.project, object: e.id });
    const base = {
      type: 'drift' as const,
      project: info.project,
      commit: info.commit,
      object: e.id,
      patch: masked as Array<Record<string, unknown>>,
      ...(manager ? { manager } : {}),
    };
    const target = {
      apiVersion: e.live?.apiVersion,
      identity,
      uid: plan.action === 'create' ? undefined : e.live?.metadata.uid,
    };
    const by = manager ? ` by ${manager}` : '';

    if (settings.mode === 'detect') {
      const signature = JSON.stringify(masked.filter((op) => op.op !== 'test'));
      if (state.detected === signature) return;
      state.detected = signature;
      this.opts.report({ ...base, action: 'detected', at: new Date().toISOString() });
      this.opts.metrics?.recordDrift('detected');
      log.warn({ manager, deleted: plan.action === 'create', patch: masked }, 'drift detected');
      await this.opts.recordEvent?.(target, {
        reason: 'DriftDetected',
        type: 'Warning',
        message: `${e.id} drifted from Git${by} (detect mode: not reverted)`,
      });
      return;
    }

    const decision = recordRevert(state.fight, started, this.opts.fightPolicy ?? DEFAULT_FIGHT_POLICY);
    state.fight = decision.state;
    const change = await this.opts.engine.applyOne(e.unit, key, { ignore });
    const durationMs = this.now() - started;
    if (change.action === 'failed' || change.action === 'skipped') {
      this.opts.metrics?.recordDrift('failed');
      log.warn({ manager, reason: change.error?.message ?? change.reason }, 'drift revert failed');
      return;
    }
    const action: DriftMessage['action'] = decision.fight
      ? 'fight'
      : plan.action === 'create'
        ? 'recreated'
        : 'reverted';
    this.opts.report({ ...base, action, at: new Date().toISOString() });
    this.opts.metrics?.recordDrift(action, durationMs);
    if (decision.fight) {
      log.warn({ manager, holdMs: decision.holdMs, patch: masked, durationMs }, 'drift fight: reverted, backing off');
      await this.opts.recordEvent?.(target, {
        reason: 'DriftFight',
        type: 'Warning',
        message: `${e.id} keeps being changed${by}; reverted and backing off ${Math.round(decision.holdMs / 1000)}s`,
      });
    } else {
      log.info({ manager, action, patch: masked, durationMs }, 'drift reverted');
      await this.opts.recordEvent?.(target, {
        reason: 'DriftReverted',
        type: 'Normal',
        message: `${e.id} ${action === 'recreated' ? 'was deleted; recreated from Git' : `drifted from Git${by}; reverted`}`,
      });
    }
  }
}
