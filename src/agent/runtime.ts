/**
 * The running agent, wired top to bottom: restore the state dir → start the sync loop and the
 * drift controller over the engine → contend for the leader Lease → connect to the server. Server
 * messages flow into the state dir and the sync loop; status and drift reports flow back through
 * the session (buffered while offline), health frames after them (the runner waits for health
 * after each apply; the engine follows it), and an object that turns failed gets a Kubernetes
 * Event. Everything here is wiring: decisions live in the modules it connects (session, runner,
 * drift, leader, state).
 */
import type { Logger, LogLevel } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import type { ConfigMessage, DesiredMessage, DriftConfig, ErrorMessage, HelloMessage } from '../protocol/messages.js';
import { DriftController } from './drift.js';
import { healthFailedNote, type EventRecorder } from './events.js';
import type { KubeObject } from './kube/types.js';
import { LeaderElector, type LeaderElectorOptions } from './leader.js';
import type { AgentMetrics } from './metrics.js';
import { identityOf } from './reconcile/ignore.js';
import type { HealthFollower, Reconciler } from './reconciler.js';
import { SyncLoop, type ObjectFailure } from './runner.js';
import { Session, type SessionOptions } from './session.js';
import type { DesiredState, StateStore } from './state.js';

export const DEFAULT_DRIFT: DriftConfig = { mode: 'correct', ignore: [] };

/** The engine's cached copy of a followed object (apiVersion and uid for an Event), no request. */
export interface LiveObjects {
  liveObject(unit: string, id: string): KubeObject | undefined;
}

export interface AgentRuntimeOptions {
  engine: Reconciler & HealthFollower & LiveObjects;
  store: StateStore;
  logger: Logger;
  metrics: AgentMetrics;
  fieldManager: string;
  /** Inventory name per project. */
  unitName: (project: string) => string;
  /** Session settings; handlers, hello contents and reporting are filled in here. */
  session: Pick<
    SessionOptions,
    'url' | 'signJwt' | 'ca' | 'agentVersion' | 'pingIntervalMs' | 'deadAfterMs' | 'reconnect' | 'slowReconnect'
  >;
  /** Leader election; absent means this replica always leads (single replica, no Lease rights). */
  leader?: Omit<LeaderElectorOptions, 'onChange' | 'logger'>;
  recordEvent?: EventRecorder;
  /** Periodic full re-apply (0 = off). */
  resyncIntervalMs: number;
}

export class AgentRuntime {
  private readonly opts: AgentRuntimeOptions;
  readonly loop: SyncLoop;
  readonly drift: DriftController;
  readonly session: Session;
  private readonly elector?: LeaderElector;
  private driftSettings: DriftConfig = DEFAULT_DRIFT;
  /** Desired state held per project (persisted), for hello. */
  private readonly held = new Map<string, DesiredState>();
  private restored = false;
  private resyncTimer?: NodeJS.Timeout;
  private readonly initialLevel: string;

  constructor(options: AgentRuntimeOptions) {
    this.opts = options;
    const { logger, metrics } = options;
    this.initialLevel = logger.level;
    this.loop = new SyncLoop({
      engine: options.engine,
      health: options.engine,
      unitName: options.unitName,
      logger: logger.child({ component: 'sync' }),
      metrics,
      report: (report) => {
        if (this.loop.isActive) this.session.send(report);
      },
      onObjectFailed: (failure) => this.recordFailure(failure),
      onIdle: (unit) => this.drift.unitIdle(unit),
      driftIgnore: () => this.driftSettings.ignore,
    });
    this.drift = new DriftController({
      engine: options.engine,
      fieldManager: options.fieldManager,
      logger: logger.child({ component: 'drift' }),
      metrics,
      settings: () => this.driftSettings,
      isActive: () => this.loop.isActive,
      unitInfo: (unit) => this.loop.unitInfo(unit),
      isBusy: (unit) => this.loop.isBusy(unit),
      report: (m) => this.session.send(m),
      recordEvent: options.recordEvent,
    });
    this.session = new Session({
      ...options.session,
      logger: logger.child({ component: 'session' }),
      applied: () => this.hello(),
      onConfig: (m) => this.onConfig(m),
      onDesired: (m) => this.onDesired(m),
      onError: (m) => this.onError(m),
      onState: (s) => metrics.setConnection(s),
      onDropped: () => metrics.reportDropped(),
    });
    if (options.leader) {
      this.elector = new LeaderElector({
        ...options.leader,
        logger: logger.child({ component: 'leader' }),
        onChange: (leader) => {
          metrics.setLeader(leader);
          this.loop.setActive(leader);
        },
      });
    }
  }

  /** Restores the state dir, then starts enforcing and connecting. */
  async start(): Promise<void> {
    const log = this.opts.logger;
    await this.opts.store.init();
    const state = await this.opts.store.load();
    for (const problem of state.problems) log.warn({ problem }, 'state file skipped');
    if (state.settings) {
      this.applySettings(state.settings.settings.drift, state.settings.settings.logLevel);
    }
    for (const desired of state.projects) {
      this.held.set(desired.project, desired);
      this.loop.setDesired(desired);
    }
    this.restored = state.projects.length > 0;
    if (this.restored)
      log.info(
        { projects: state.projects.map((p) => ({ project: p.project, commit: p.commit })) },
        'restored desired state from the state dir',
      );
    this.drift.start();
    if (this.elector) this.elector.start();
    else {
      this.opts.metrics.setLeader(true);
      this.loop.setActive(true);
    }
    this.session.start();
    if (this.opts.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => this.resync(), this.opts.resyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  /** Ready when connected to the server or enforcing a restored desired state. */
  readiness(): { ready: boolean; reason: string } {
    if (this.session.connected) return { ready: true, reason: 'connected to the server' };
    if (this.restored || this.held.size > 0)
      return { ready: true, reason: `enforcing the last desired state offline (${this.session.connectionState})` };
    return { ready: false, reason: `not connected (${this.session.connectionState}) and no desired state yet` };
  }

  /** Stops in the reverse order of start; the Lease is released last so the standby finds a settled cluster. */
  async stop(): Promise<void> {
    clearInterval(this.resyncTimer);
    await this.session.stop();
    this.drift.stop();
    await this.loop.close();
    await this.elector?.stop();
    await this.opts.engine.close();
  }

  /** A HealthFailed Event on the object, best effort (the recorder logs its own failures). */
  private recordFailure(failure: ObjectFailure): void {
    const record = this.opts.recordEvent;
    if (!record) return;
    const live = this.opts.engine.liveObject(failure.unit, failure.entry.id);
    if (!live) {
      this.opts.logger.debug({ object: failure.entry.id }, 'no Event for the failed object: not in the watch cache');
      return;
    }
    const target = { apiVersion: live.apiVersion, identity: identityOf(live), uid: live.metadata.uid };
    record(target, healthFailedNote(failure.entry, failure.commit)).catch((err: unknown) =>
      this.opts.logger.debug({ object: failure.entry.id, err: errorMessage(err) }, 'event not recorded'),
    );
  }

  private resync(): void {
    // In detect mode a re-apply would revert what detect mode promises to leave alone.
    if (this.driftSettings.mode === 'detect') return;
    this.opts.logger.debug({}, 'periodic re-sync');
    this.loop.resyncAll();
  }

  private hello(): HelloMessage['applied'] {
    const out: HelloMessage['applied'] = {};
    for (const [project, d] of this.held) out[project] = { commit: d.commit, digest: d.digest };
    return out;
  }

  private applySettings(drift: DriftConfig, logLevel?: string): void {
    this.driftSettings = drift;
    const level = logLevel ?? this.initialLevel;
    if (this.opts.logger.level !== level) {
      this.opts.logger.info({ logLevel: level }, 'log level changed');
      this.opts.logger.level = level as LogLevel;
    }
  }

  private async onConfig(m: ConfigMessage): Promise<void> {
    const log = this.opts.logger;
    if (m.errors.length)
      log.warn({ problems: m.errors }, 'agent configuration has problems: the last valid settings stay in force');
    const before = JSON.stringify(this.driftSettings);
    this.applySettings(m.settings.drift, m.settings.logLevel);
    if (JSON.stringify(this.driftSettings) !== before)
      log.info({ drift: this.driftSettings }, 'drift settings changed');
    const projects = new Set(m.projects);
    for (const project of [...this.held.keys()]) {
      if (projects.has(project)) continue;
      log.info({ project }, 'project no longer in the agent configuration: no longer enforced (its objects stay)');
      this.held.delete(project);
      this.loop.remove(project);
      await this.opts.store.removeProject(project);
    }
    await this.opts.store.saveSettings({ settings: m.settings, projects: m.projects });
  }

  private async onDesired(m: DesiredMessage): Promise<void> {
    const desired: DesiredState = {
      project: m.project,
      commit: m.commit,
      digest: m.digest,
      config: m.config,
      files: m.files,
    };
    const held = this.held.get(m.project);
    this.opts.logger.info({ project: m.project, commit: m.commit, files: m.files.length }, 'desired state received');
    if (!held || held.digest !== m.digest) {
      try {
        await this.opts.store.saveDesired(desired);
      } catch (err) {
        // Still apply: being unable to remember it must not stop us from enforcing it now.
        this.opts.logger.error({ project: m.project, err: errorMessage(err) }, 'cannot persist the desired state');
      }
    }
    this.held.set(m.project, desired);
    this.loop.setDesired(desired);
  }

  private onError(m: ErrorMessage): void {
    // No problems means the server's problem with that project cleared (Git readable again).
    if (m.problems.length === 0) this.opts.logger.info({ project: m.project }, 'server problem cleared');
    else this.opts.logger.warn({ project: m.project, problems: m.problems }, 'server reported a problem');
  }
}
