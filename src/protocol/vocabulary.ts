/**
 * The closed word lists server and agent share, as plain constants (no zod, no wire shapes): the
 * wire schemas in messages.ts, the server's config.yaml validation and the agent's reconcile core
 * all take them from here, so a new word is added in one place.
 */

/** What happened to one object in an apply. */
export const ACTIONS = ['created', 'configured', 'unchanged', 'pruned', 'skipped', 'failed'] as const;
export type Action = (typeof ACTIONS)[number];

/** GitLab's `inventory_policy`: which live objects an inventory may take over (see reconcile/policy.ts). */
export const INVENTORY_POLICIES = ['must_match', 'adopt_if_no_inventory', 'adopt_all'] as const;
export type InventoryPolicy = (typeof INVENTORY_POLICIES)[number];

/** The outcome of one apply as a status reports it. */
export const APPLY_RESULTS = ['applied', 'failed', 'partial'] as const;
export type ApplyResult = (typeof APPLY_RESULTS)[number];

/** GitLab's `prune_propagation_policy`: how pruned objects are deleted. */
export const PROPAGATION_POLICIES = ['foreground', 'background', 'orphan'] as const;
export type PropagationPolicy = (typeof PROPAGATION_POLICIES)[number];

/** GitLab's `dry_run_strategy`: `server` dry-runs the whole set before writing anything. */
export const DRY_RUN_STRATEGIES = ['none', 'client', 'server'] as const;
export type DryRunStrategy = (typeof DRY_RUN_STRATEGIES)[number];

/** `gitops.drift.mode`: revert manual changes, only report them, or ignore them. */
export const DRIFT_MODES = ['correct', 'detect', 'off'] as const;
export type DriftMode = (typeof DRIFT_MODES)[number];

/**
 * One object's health (kstatus' words, lower-case as on the wire): `current` is ready and
 * settled, `in_progress` still rolling out, `failed` will not get there by waiting
 * (CrashLoopBackOff, a failed Job), `terminating` being deleted, `not_found` absent, `unknown`
 * when its status cannot be read. Rules in src/agent/health/status.ts.
 */
export const HEALTH_STATES = ['current', 'in_progress', 'failed', 'terminating', 'not_found', 'unknown'] as const;
export type HealthState = (typeof HEALTH_STATES)[number];

/**
 * A commit's health after its apply, as GitLab's agent waited for it: `progressing` while
 * objects are followed, `healthy` when every applied object is current and every pruned one is
 * gone, `degraded` as soon as one is failed, `timed_out` when `reconcile_timeout` (or
 * `prune_timeout` for pruned objects) passed first.
 */
export const HEALTH_RESULTS = ['progressing', 'healthy', 'degraded', 'timed_out'] as const;
export type HealthResult = (typeof HEALTH_RESULTS)[number];
