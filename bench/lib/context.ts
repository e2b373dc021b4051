/**
 * What every scenario gets: the options, the one control plane and Git server of the run, a raw
 * API client for baselines, the process group for the product's processes, and the result shape
 * each scenario returns (one JSON line on stdout).
 */
import type { KubeConfig } from '@kubernetes/client-node';
import type { ControlPlane } from '../../e2e/harness/controlplane.js';
import type { GitServer } from '../../e2e/harness/git-server.js';
import type { ProcessGroup } from '../../e2e/harness/processes.js';
import { mixedObjects } from '../../e2e/engine/objects.js';
import type { RawKube } from './kube-raw.js';

export const SCENARIOS = [
  // First: it starts a real node, and no other scenario's Deployment may land on it.
  'commit-to-healthy',
  'initial-sync',
  'unchanged-resync',
  'agent-memory',
  'drift-revert',
  'commit-to-cluster',
  'fan-out',
] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

export interface BenchOptions {
  scenarios: ScenarioName[];
  /** Size of the mixed object set (N). */
  objects: number;
  /** Agents for fan-out (K). */
  agents: number;
  /** Drift edits (200; 40 with --quick). */
  edits: number;
  /** Commits per commit-to-cluster mode (50; 10 with --quick). */
  commits: number;
  /** Rollouts of commit-to-healthy, and of each of its baselines (10; 3 with --quick). */
  rollouts: number;
  quick: boolean;
  json?: string;
}

export interface BenchContext {
  readonly options: BenchOptions;
  readonly cp: ControlPlane;
  readonly kc: KubeConfig;
  readonly raw: RawKube;
  readonly git: GitServer;
  readonly group: ProcessGroup;
  /** One progress line on stderr. */
  progress(line: string): void;
  /** State scenarios share (the engine of initial-sync, the agent managing the set). */
  readonly shared: Map<string, unknown>;
}

/** A goal on one metric: the metric must be at most `max`. */
export interface Goal {
  max: number;
}

export interface ScenarioResult {
  scenario: ScenarioName;
  objects: number;
  metrics: Record<string, number>;
  baseline: Record<string, number>;
  goals: Record<string, Goal>;
  pass: boolean;
  /** Load average (1, 5, 15 min) when the scenario ended: this machine is shared. */
  load: number[];
  /** Anything a reader needs to read the numbers right (failures, timeouts). */
  notes?: string[];
  /** Set when the scenario could not run on this machine (no metrics then), saying why. */
  skipped?: string;
}

/** True when every goal's metric is present and within its bound. */
export function meetsGoals(metrics: Record<string, number>, goals: Record<string, Goal>): boolean {
  return Object.entries(goals).every(([name, goal]) => Number.isFinite(metrics[name]) && metrics[name] <= goal.max);
}

export type KubeObject = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: unknown };
  [k: string]: unknown;
};

/** The set: N mixed objects (e2e/engine/objects.ts) in `namespace`, preceded by that Namespace. */
export function objectSet(n: number, namespace: string): KubeObject[] {
  const objects = (mixedObjects(n) as KubeObject[]).map((o) => ({ ...o, metadata: { ...o.metadata, namespace } }));
  return [{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } }, ...objects];
}

/** REST collection path of a namespaced object of the set. */
export function collectionPath(kind: string, namespace: string): string {
  switch (kind) {
    case 'ConfigMap':
      return `/api/v1/namespaces/${namespace}/configmaps`;
    case 'Secret':
      return `/api/v1/namespaces/${namespace}/secrets`;
    case 'Service':
      return `/api/v1/namespaces/${namespace}/services`;
    case 'Deployment':
      return `/apis/apps/v1/namespaces/${namespace}/deployments`;
    case 'Namespace':
      return '/api/v1/namespaces';
    default:
      throw new Error(`${kind}: not a kind of the bench set`);
  }
}
