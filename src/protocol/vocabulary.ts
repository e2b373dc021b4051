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
