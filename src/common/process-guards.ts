/**
 * Process-wide last resorts of a long-running daemon (`gitops-server serve`).
 *
 * - An unhandled promise rejection is a bug in whoever forgot to own that promise, not a reason
 *   to stop serving every other agent: it is logged ('unhandled promise rejection', with the
 *   error's code and message and a few stack frames, never the value itself, which may be any
 *   object), counted (the caller wires a metric with countWith) and the process carries on. Logs
 *   are capped per minute so a rejection in a hot loop cannot fill the disk; the count is not.
 * - An uncaught exception left a synchronous call stack half done, so state may be inconsistent:
 *   it is logged ('uncaught exception; exiting') and the process exits with status 1, for the
 *   supervisor (Kubernetes, systemd) to restart it from the state dir.
 *
 * Error messages in this project never carry secrets (errors.ts); what is logged is bounded.
 */
import type { Logger } from './logger.js';

/** The part of `process` the guards use (a fake in tests). */
export interface GuardedProcess {
  on(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  on(event: 'uncaughtException', listener: (err: Error) => void): unknown;
  off(event: 'unhandledRejection', listener: (reason: unknown) => void): unknown;
  off(event: 'uncaughtException', listener: (err: Error) => void): unknown;
}

export interface ProcessGuardOptions {
  logger: Logger;
  /** Default: the real process. */
  target?: GuardedProcess;
  /** Default: process.exit. */
  exit?: (code: number) => void;
  /** Rejections logged per window; later ones in the window are only counted (default 10). */
  logsPerWindow?: number;
  /** Default 60 s. */
  windowMs?: number;
  now?: () => number;
}

export interface ProcessGuards {
  /** Rejections seen so far. */
  readonly rejections: number;
  /** Counts every rejection (those already seen too) in `counter`, e.g. a Prometheus counter. */
  countWith(counter: { inc(value?: number): void }): void;
  /** Removes the handlers. */
  dispose(): void;
}

const MAX_MESSAGE = 1000;
const MAX_FRAMES = 8;

/** Fields safe to log for any thrown value: its class, code, bounded message and a few frames. */
export function describeThrown(value: unknown): { type: string; code?: string; err: string; stack?: string[] } {
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    const frames = (value.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).slice(0, MAX_FRAMES).map((l) => l.trim().slice(0, 300));
    return {
      type: value.name.slice(0, 100),
      ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code).slice(0, 100) } : {}),
      err: value.message.length > MAX_MESSAGE ? `${value.message.slice(0, MAX_MESSAGE)}…` : value.message,
      ...(frames.length ? { stack: frames } : {}),
    };
  }
  // A rejection with a non-Error value: its type only (an object may hold anything).
  const type = value === null ? 'null' : typeof value;
  return { type, err: type === 'string' ? (value as string).slice(0, MAX_MESSAGE) : `a ${type} was thrown, not an Error` };
}

export function installProcessGuards(options: ProcessGuardOptions): ProcessGuards {
  const target = options.target ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const now = options.now ?? Date.now;
  const perWindow = options.logsPerWindow ?? 10;
  const windowMs = options.windowMs ?? 60_000;
  const counters: { inc(value?: number): void }[] = [];
  let rejections = 0;
  let windowStart = now();
  let loggedInWindow = 0;
  let suppressed = 0;

  const onRejection = (reason: unknown): void => {
    rejections++;
    for (const c of counters) c.inc();
    const t = now();
    if (t - windowStart >= windowMs) {
      if (suppressed > 0) options.logger.error({ suppressed, windowMs }, 'unhandled promise rejections not logged');
      windowStart = t;
      loggedInWindow = 0;
      suppressed = 0;
    }
    if (loggedInWindow >= perWindow) {
      suppressed++;
      return;
    }
    loggedInWindow++;
    options.logger.error({ ...describeThrown(reason), total: rejections }, 'unhandled promise rejection');
  };
  const onException = (err: Error): void => {
    options.logger.fatal(describeThrown(err), 'uncaught exception; exiting');
    exit(1);
  };
  target.on('unhandledRejection', onRejection);
  target.on('uncaughtException', onException);
  return {
    get rejections() { return rejections; },
    countWith(counter) {
      if (rejections > 0) counter.inc(rejections);
      counters.push(counter);
    },
    dispose() {
      target.off('unhandledRejection', onRejection);
      target.off('uncaughtException', onException);
    },
  };
}
