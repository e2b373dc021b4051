/**
 * What the health rules (status.ts, status-pods.ts) read objects with: free-form JSON from the API
 * server, read by path with the type a rule needs. A field of another type throws
 * {@link UnreadableStatus}, which healthOf turns into the state `unknown` naming the field; an
 * absent or null field is the rule's default. Also the results the rules give and the
 * {@link Clock} they judge graces by.
 */
import type { ObjectHealth } from './types.js';

export type Json = Record<string, unknown>;

/** A field of a type no rule can read: the object's health is `unknown`, naming the field. */
export class UnreadableStatus extends Error {}

export function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A value as a message quotes it: JSON, at most 40 characters. */
export function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? typeof value;
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

/** The value at a dotted path; undefined when a step is absent or null (JSON's two ways of "unset"). */
export function at(obj: Json, path: string): unknown {
  let node: unknown = obj;
  let walked = '';
  for (const key of path.split('.')) {
    if (node === undefined || node === null) return undefined;
    if (!isRecord(node)) throw new UnreadableStatus(`${walked} is ${shown(node)}, not an object`);
    node = node[key];
    walked = walked ? `${walked}.${key}` : key;
  }
  return node ?? undefined;
}

export function optionalInt(obj: Json, path: string): number | undefined {
  const value = at(obj, path);
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value))
    throw new UnreadableStatus(`${path} is ${shown(value)}, not an integer`);
  return value;
}

export function int(obj: Json, path: string, fallback: number): number {
  return optionalInt(obj, path) ?? fallback;
}

export function str(obj: Json, path: string): string {
  const value = at(obj, path);
  if (value === undefined) return '';
  if (typeof value !== 'string') throw new UnreadableStatus(`${path} is ${shown(value)}, not a string`);
  return value;
}

export function list(obj: Json, path: string): unknown[] {
  const value = at(obj, path);
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new UnreadableStatus(`${path} is ${shown(value)}, not a list`);
  return value;
}

/** A timestamp in ms, or undefined when absent or not a date (a grace then counts as over). */
export function timeAt(obj: Json, path: string): number | undefined {
  const value = at(obj, path);
  const ms = typeof value === 'string' ? Date.parse(value) : NaN;
  return Number.isNaN(ms) ? undefined : ms;
}

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
}

/**
 * `status.conditions`. A list of another type is unreadable; a single odd entry (no string type
 * or status) is skipped, so that one controller's stray write does not hide every other condition.
 */
export function conditionsOf(obj: Json): Condition[] {
  return list(obj, 'status.conditions').flatMap((entry): Condition[] => {
    if (!isRecord(entry) || typeof entry.type !== 'string' || typeof entry.status !== 'string') return [];
    const text = (v: unknown): string => (typeof v === 'string' ? v : '');
    return [{ type: entry.type, status: entry.status, reason: text(entry.reason), message: text(entry.message) }];
  });
}

export function conditionOf(conditions: readonly Condition[], type: string): Condition | undefined {
  return conditions.find((c) => c.type === type);
}

export function isTrue(conditions: readonly Condition[], type: string): boolean {
  return conditionOf(conditions, type)?.status === 'True';
}

/** `1 replica`, `2 replicas`. */
export function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** `reason: message`, either part left out when empty. */
export function said(reason: string, message: string): string {
  return [reason, message].filter(Boolean).join(': ');
}

// ---- results ----

export const current = (reason: string, message: string): ObjectHealth => ({ state: 'current', reason, message });
export const inProgress = (reason: string, message: string): ObjectHealth => ({
  state: 'in_progress',
  reason,
  message,
});
export const failed = (reason: string, message: string): ObjectHealth => ({ state: 'failed', reason, message });

// ---- the clock ----

/**
 * The caller's time, and the moments ahead at which a verdict read from it changes by itself:
 * every grace a rule is still inside records its end, so `recheckAt` (status.ts) is exactly what
 * the rules waited on, not a second copy of them.
 */
export class Clock {
  readonly wakeups: number[] = [];
  constructor(readonly now: number) {}

  /** Whether `deadline` is still ahead (and if so, remember to look again then). */
  before(deadline: number): boolean {
    if (this.now >= deadline) return false;
    this.wakeups.push(deadline);
    return true;
  }
}

/** `read()`, or undefined when it throws: for a part (one pod of many) that may be skipped. */
export function readable<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}
