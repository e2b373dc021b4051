/**
 * The server's Prometheus metrics, on a registry of their own (so several servers in one test
 * process do not collide). Label values are closed sets or project ids, never agent-supplied text.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { HEALTH_RESULTS, type HealthResult } from '../protocol/vocabulary.js';

export interface ServerMetrics {
  registry: Registry;
  connectedSessions: Gauge;
  connectedAgents: Gauge;
  commitsDetected: Counter<'project'>;
  desiredPushes: Counter;
  desiredCoalesced: Counter;
  authFailures: Counter<'reason'>;
  fetchDuration: Histogram<'result'>;
  webhooks: Counter<'source' | 'result'>;
  invalidFrames: Counter<'reason'>;
  /** Promise rejections no code owned (src/common/process-guards.ts); each was logged. */
  unhandledRejections: Counter;
  /** Background tasks of the fleet (config reads, pushes) that failed; each was logged as 'fleet task failed'. */
  backgroundFailures: Counter<'task'>;
  agentLimited: Counter<'reason'>;
}

export function createServerMetrics(options: { defaultMetrics?: boolean } = {}): ServerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'gitops_server_' });
  const registers = [registry];
  return {
    registry,
    connectedSessions: new Gauge({
      name: 'gitops_server_connected_sessions',
      help: 'WebSocket sessions of authenticated agents (an agent with two replicas counts twice).',
      registers,
    }),
    connectedAgents: new Gauge({
      name: 'gitops_server_connected_agents',
      help: 'Agents with at least one live session.',
      registers,
    }),
    commitsDetected: new Counter({
      name: 'gitops_server_commits_detected_total',
      help: 'New commits seen on watched projects.',
      labelNames: ['project'],
      registers,
    }),
    desiredPushes: new Counter({
      name: 'gitops_server_desired_pushes_total',
      help: 'desired messages sent to agent sessions.',
      registers,
    }),
    desiredCoalesced: new Counter({
      name: 'gitops_server_desired_coalesced_total',
      help: 'desired messages never sent because a newer one for the same project replaced them while the session was slow.',
      registers,
    }),
    authFailures: new Counter({
      name: 'gitops_server_auth_failures_total',
      help: 'Refused WebSocket upgrades by reason code.',
      labelNames: ['reason'],
      registers,
    }),
    fetchDuration: new Histogram({
      name: 'gitops_server_git_fetch_duration_seconds',
      help: 'Duration of Git checks of a watched ref (polled or webhook-triggered) and of manifest reads at a commit.',
      labelNames: ['result'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    webhooks: new Counter({
      name: 'gitops_server_webhooks_total',
      help: 'Webhook requests by source and result.',
      labelNames: ['source', 'result'],
      registers,
    }),
    invalidFrames: new Counter({
      name: 'gitops_server_invalid_frames_total',
      help: 'Agent sessions closed for a malformed, unknown or oversized frame.',
      labelNames: ['reason'],
      registers,
    }),
    unhandledRejections: new Counter({
      name: 'gitops_server_unhandled_rejections_total',
      help: "Promise rejections no code handled; each was logged as 'unhandled promise rejection' and the server carried on (a bug: please report it).",
      registers,
    }),
    backgroundFailures: new Counter({
      name: 'gitops_server_background_failures_total',
      help: "Fleet background tasks (reading an agent's config, pushing a project) that failed with an unexpected error; logged as 'fleet task failed'.",
      labelNames: ['task'],
      registers,
    }),
    agentLimited: new Counter({
      name: 'gitops_server_agent_limited_total',
      labelNames: ['reason'],
      registers,
      help: 'Agent upgrades refused (429) or sessions and reports dropped by a per-agent limit: JWT_RATE_LIMITED, JWT_REPLAY_QUOTA, JWT_REPLAY_CACHE_FULL, sessions (oldest replaced), unknown-project (report refused).',
    }),
  };
}

/** What the agent registry could not read (Registry.health()), and the agents' health results. */
export interface RegistryHealthSource {
  health(): { agentsFileProblem?: string; invalidRecords: number; invalidStatus: number };
  /** (agent, project) pairs per latest health result (Registry.healthResults()). */
  healthResults(): Record<HealthResult, number>;
}

/**
 * Gauges read from the registry at each scrape: gitops_server_agents_file_unreadable (1 while
 * agents.json is missing or unreadable and the known agents are kept) and
 * gitops_server_state_records_skipped{kind="agent"|"status"}, and gitops_server_agent_health{result}
 * (one label of four values: which agent is unhealthy is in `agent list`, not in a label per agent).
 */
export function registerRegistryHealth(metrics: Pick<ServerMetrics, 'registry'>, source: RegistryHealthSource): void {
  const registers = [metrics.registry];
  new Gauge({
    name: 'gitops_server_agents_file_unreadable',
    registers,
    help: "1 while agents.json is missing or cannot be parsed after the server read it: the server keeps the agents it knows and revokes none (log: 'agents file unreadable; keeping the agents known').",
    collect() {
      this.set(source.health().agentsFileProblem === undefined ? 0 : 1);
    },
  });
  new Gauge({
    name: 'gitops_server_state_records_skipped',
    labelNames: ['kind'],
    registers,
    help: "Records of the state dir that failed validation and were skipped: agent records at the last read of agents.json and its journal, status entries at start-up (log: 'agent record skipped', 'status record skipped'; agent list shows them as warnings).",
    collect() {
      const h = source.health();
      this.set({ kind: 'agent' }, h.invalidRecords);
      this.set({ kind: 'status' }, h.invalidStatus);
    },
  });
  new Gauge({
    name: 'gitops_server_agent_health',
    labelNames: ['result'],
    registers,
    help: "Manifest projects of active agents by the latest health their agent reported (protocol 2 agents only): progressing, healthy, degraded, timed_out (log: 'agent commit healthy|degraded|timed out'; agent list shows which).",
    collect() {
      const results = source.healthResults();
      for (const result of HEALTH_RESULTS) this.set({ result }, results[result]);
    },
  });
}
