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
 *
 * Stop signals (installStopSignals): both daemons (`gitops-server serve`, `gitops-agent run`) take
 * SIGTERM and SIGINT from their first line (bin/), before any other module is loaded: loading takes
 * about half a second, and a signal then would otherwise have its default effect, which for PID 1
 * in a container is none at all (the container runtime then waits and sends SIGKILL: exit 137).
 * A signal before start-up has begun exits at once with status 0 (nothing has started); from
 * start-up on it is the daemon's to handle: it finishes starting, then stops cleanly and exits 0.
 * A second signal exits at once with status 1, for an operator who will not wait (as PID 1 the
 * default effect would again be none).
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
    const frames = (value.stack ?? '')
      .split('\n')
      .filter((l) => /^\s+at /.test(l))
      .slice(0, MAX_FRAMES)
      .map((l) => l.trim().slice(0, 300));
    return {
      type: value.name.slice(0, 100),
      ...(typeof code === 'string' || typeof code === 'number' ? { code: String(code).slice(0, 100) } : {}),
      err: value.message.length > MAX_MESSAGE ? `${value.message.slice(0, MAX_MESSAGE)}…` : value.message,
      ...(frames.length ? { stack: frames } : {}),
    };
  }
  // A rejection with a non-Error value: its type only (an object may hold anything).
  const type = value === null ? 'null' : typeof value;
  return {
    type,
    err: type === 'string' ? (value as string).slice(0, MAX_MESSAGE) : `a ${type} was thrown, not an Error`,
  };
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
    get rejections() {
      return rejections;
    },
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

// ---- stop signals ----------------------------------------------------------------------------

/** The signals that stop a daemon. */
export const STOP_SIGNALS = ['SIGTERM', 'SIGINT'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/** The part of `process` the stop signals use (a fake in tests). */
export interface SignalTarget {
  on(event: StopSignal, listener: (signal: StopSignal) => void): unknown;
  off(event: StopSignal, listener: (signal: StopSignal) => void): unknown;
}

export interface StopSignals {
  /** The first signal, once it came. */
  readonly received: StopSignal | undefined;
  /**
   * Start-up begins: from now on the first signal resolves `next` (the daemon finishes starting,
   * then stops cleanly) instead of exiting at once. `onSignal` runs when it comes, e.g. to log it.
   */
  starting(onSignal?: (signal: StopSignal) => void): void;
  /** Start-up finished: a signal from now on only resolves `next` (`onSignal` is start-up's). */
  started(): void;
  /** Resolves with the first signal after `starting()` (at once when it already came). */
  readonly next: Promise<StopSignal>;
  /** Removes the listeners. */
  dispose(): void;
}

export interface StopSignalOptions {
  /** Default: the real process. */
  target?: SignalTarget;
  /** Default: process.exit. */
  exit?: (code: number) => void;
}

/** Listens for SIGTERM and SIGINT at once; see the module header for what each phase does. */
export function installStopSignals(options: StopSignalOptions = {}): StopSignals {
  const target = options.target ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let started = false;
  let received: StopSignal | undefined;
  let onSignal: ((signal: StopSignal) => void) | undefined;
  let resolveNext: (signal: StopSignal) => void = () => undefined;
  const next = new Promise<StopSignal>((resolve) => {
    resolveNext = resolve;
  });
  const listener = (signal: StopSignal): void => {
    if (received !== undefined) return exit(1);
    received = signal;
    if (!started) return exit(0);
    onSignal?.(signal);
    resolveNext(signal);
  };
  for (const s of STOP_SIGNALS) target.on(s, listener);
  return {
    get received() {
      return received;
    },
    starting(callback) {
      started = true;
      onSignal = callback;
    },
    started() {
      started = true;
      onSignal = undefined;
    },
    next,
    dispose() {
      for (const s of STOP_SIGNALS) target.off(s, listener);
    },
  };
}

let installed: StopSignals | undefined;

/**
 * The real process's stop signals, installed by the first call: bin/ calls it first thing for the
 * daemon commands, and the daemon's action again to use them (a command run in-process, without
 * bin/, installs them there).
 */
export function processStopSignals(): StopSignals {
  installed ??= installStopSignals();
  return installed;
}
