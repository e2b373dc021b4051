/**
 * The agent's Prometheus metrics, in one registry served at `/metrics`: object actions per apply,
 * apply and revert durations, drift outcomes, managed objects and their health, the health result
 * of the commit in force and the time it took to become healthy, connection state and leadership.
 * Callers record through the typed methods so label values stay a closed set (project ids are
 * the one open label, as many as the agent configuration names).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HEALTH_RESULTS, HEALTH_STATES, type Action, type HealthState } from '../protocol/vocabulary.js';
import type { HealthReport } from './health/types.js';

export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'unauthorized' | 'revoked' | 'stopped';
const CONNECTION_STATES: readonly ConnectionState[] = [
  'connecting',
  'connected',
  'disconnected',
  'unauthorized',
  'revoked',
  'stopped',
];
export type DriftAction = 'reverted' | 'recreated' | 'detected' | 'fight' | 'failed';

export class AgentMetrics {
  readonly registry = new Registry();
  private readonly objectActions: Counter<'project' | 'action'>;
  private readonly applies: Counter<'project' | 'result'>;
  private readonly applyDuration: Histogram<'project'>;
  private readonly drift: Counter<'action'>;
  private readonly revertDuration: Histogram;
  private readonly managed: Gauge<'project'>;
  private readonly objectHealth: Gauge<'project' | 'health'>;
  private readonly commitHealth: Gauge<'project' | 'result'>;
  private readonly timeToHealthy: Histogram<'project'>;
  private readonly connection: Gauge<'state'>;
  private readonly leader: Gauge;
  private readonly dropped: Counter;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'gitops_agent_' });
    this.objectActions = new Counter({
      name: 'gitops_agent_object_actions_total',
      help: 'Objects handled by applies, by action.',
      labelNames: ['project', 'action'],
      registers,
    });
    this.applies = new Counter({
      name: 'gitops_agent_applies_total',
      help: 'Applies of a manifest project, by result.',
      labelNames: ['project', 'result'],
      registers,
    });
    this.applyDuration = new Histogram({
      name: 'gitops_agent_apply_duration_seconds',
      help: 'Time to apply one commit of a manifest project.',
      labelNames: ['project'],
      registers,
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    });
    this.drift = new Counter({
      name: 'gitops_agent_drift_total',
      help: 'Drift handled, by outcome (reverted, recreated, detected, fight, failed).',
      labelNames: ['action'],
      registers,
    });
    this.revertDuration = new Histogram({
      name: 'gitops_agent_drift_revert_duration_seconds',
      help: 'Time from a change event to the reverting write.',
      registers,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    });
    this.managed = new Gauge({
      name: 'gitops_agent_managed_objects',
      help: 'Objects in the last applied set of a manifest project.',
      labelNames: ['project'],
      registers,
    });
    this.objectHealth = new Gauge({
      name: 'gitops_agent_objects',
      help: 'Objects followed for the commit in force of a manifest project, by health state (pruned ones: not_found once gone).',
      labelNames: ['project', 'health'],
      registers,
    });
    this.commitHealth = new Gauge({
      name: 'gitops_agent_commit_health',
      help: '1 for the health result of the commit in force of a manifest project (progressing, healthy, degraded, timed_out).',
      labelNames: ['project', 'result'],
      registers,
    });
    this.timeToHealthy = new Histogram({
      name: 'gitops_agent_time_to_healthy_seconds',
      help: 'Time from the end of the apply of a commit to all its objects current (once per commit).',
      labelNames: ['project'],
      registers,
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
    });
    this.connection = new Gauge({
      name: 'gitops_agent_connection_state',
      help: '1 for the current state of the connection to the server.',
      labelNames: ['state'],
      registers,
    });
    this.leader = new Gauge({
      name: 'gitops_agent_leader',
      help: '1 when this replica holds the leader Lease and applies.',
      registers,
    });
    this.dropped = new Counter({
      name: 'gitops_agent_reports_dropped_total',
      help: 'Reports dropped because the buffer for a disconnected server was full.',
      registers,
    });
    this.setConnection('connecting');
  }

  recordApply(project: string, result: string, actions: readonly Action[], durationMs: number): void {
    this.applies.inc({ project, result });
    for (const action of actions) this.objectActions.inc({ project, action });
    this.applyDuration.observe({ project }, durationMs / 1000);
    this.managed.set({ project }, actions.filter((a) => a !== 'pruned' && a !== 'failed').length);
  }

  /** The health of the commit in force: objects per state, and 1 for its result. */
  recordHealth(project: string, report: Pick<HealthReport, 'result' | 'objects'>): void {
    const counts = new Map<HealthState, number>(HEALTH_STATES.map((s) => [s, 0]));
    for (const o of report.objects) counts.set(o.state, (counts.get(o.state) ?? 0) + 1);
    for (const [health, n] of counts) this.objectHealth.set({ project, health }, n);
    for (const result of HEALTH_RESULTS) this.commitHealth.set({ project, result }, result === report.result ? 1 : 0);
  }

  recordTimeToHealthy(project: string, waitedMs: number): void {
    this.timeToHealthy.observe({ project }, waitedMs / 1000);
  }

  forgetProject(project: string): void {
    this.managed.remove({ project });
    for (const health of HEALTH_STATES) this.objectHealth.remove({ project, health });
    for (const result of HEALTH_RESULTS) this.commitHealth.remove({ project, result });
    this.timeToHealthy.remove({ project });
  }

  recordDrift(action: DriftAction, durationMs?: number): void {
    this.drift.inc({ action });
    if (durationMs !== undefined && action !== 'detected' && action !== 'failed')
      this.revertDuration.observe(durationMs / 1000);
  }

  setConnection(state: ConnectionState): void {
    for (const s of CONNECTION_STATES) this.connection.set({ state: s }, s === state ? 1 : 0);
  }

  setLeader(leader: boolean): void {
    this.leader.set(leader ? 1 : 0);
  }

  reportDropped(): void {
    this.dropped.inc();
  }
}
