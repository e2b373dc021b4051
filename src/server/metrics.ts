/**
 * The server's Prometheus metrics, on a registry of their own (so several servers in one test
 * process do not collide). Label values are closed sets or project ids, never agent-supplied text.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
    connectedSessions: new Gauge({ name: 'gitops_server_connected_sessions', help: 'WebSocket sessions of authenticated agents (an agent with two replicas counts twice).', registers }),
    connectedAgents: new Gauge({ name: 'gitops_server_connected_agents', help: 'Agents with at least one live session.', registers }),
    commitsDetected: new Counter({ name: 'gitops_server_commits_detected_total', help: 'New commits seen on watched projects.', labelNames: ['project'], registers }),
    desiredPushes: new Counter({ name: 'gitops_server_desired_pushes_total', help: 'desired messages sent to agent sessions.', registers }),
    desiredCoalesced: new Counter({ name: 'gitops_server_desired_coalesced_total', help: 'desired messages never sent because a newer one for the same project replaced them while the session was slow.', registers }),
    authFailures: new Counter({ name: 'gitops_server_auth_failures_total', help: 'Refused WebSocket upgrades by reason code.', labelNames: ['reason'], registers }),
    fetchDuration: new Histogram({
      name: 'gitops_server_git_fetch_duration_seconds', help: 'Duration of Git checks of a watched ref (polled or webhook-triggered) and of manifest reads at a commit.',
      labelNames: ['result'], buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers,
    }),
    webhooks: new Counter({ name: 'gitops_server_webhooks_total', help: 'Webhook requests by source and result.', labelNames: ['source', 'result'], registers }),
    invalidFrames: new Counter({ name: 'gitops_server_invalid_frames_total', help: 'Agent sessions closed for a malformed, unknown or oversized frame.', labelNames: ['reason'], registers }),
    backgroundFailures: new Counter({ name: 'gitops_server_background_failures_total', help: "Fleet background tasks (reading an agent's config, pushing a project) that failed with an unexpected error; logged as 'fleet task failed'.", labelNames: ['task'], registers }),
    agentLimited: new Counter({
      name: 'gitops_server_agent_limited_total', labelNames: ['reason'], registers,
      help: 'Agent upgrades refused (429) or sessions and reports dropped by a per-agent limit: JWT_RATE_LIMITED, JWT_REPLAY_QUOTA, JWT_REPLAY_CACHE_FULL, sessions (oldest replaced), unknown-project (report refused).',
    }),
  };
}
