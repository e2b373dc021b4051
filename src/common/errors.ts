/**
 * Error classes by what happens next. Every error carries a stable `code` (for logs, status and
 * tests), an optional object id or file location first in its message, and never a secret.
 *
 * - UserError: the input is wrong; nothing is retried until a person changes it.
 * - RetryableError: the operation may succeed later (conflicts, unavailable API server).
 * - TransientError: a short blip (network reset); retry soon.
 */
export type ErrorKind = 'user' | 'retryable' | 'transient';

export class GitopsError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly data: Record<string, unknown>;

  constructor(
    kind: ErrorKind,
    code: string,
    message: string,
    options: { cause?: unknown; data?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.kind = kind;
    this.code = code;
    this.data = options.data ?? {};
  }

  toJSON(): { code: string; kind: ErrorKind; message: string; data?: Record<string, unknown> } {
    return {
      code: this.code,
      kind: this.kind,
      message: this.message,
      ...(Object.keys(this.data).length ? { data: this.data } : {}),
    };
  }
}

export class UserError extends GitopsError {
  constructor(code: string, message: string, options: { cause?: unknown; data?: Record<string, unknown> } = {}) {
    super('user', code, message, options);
  }
}

export class RetryableError extends GitopsError {
  constructor(code: string, message: string, options: { cause?: unknown; data?: Record<string, unknown> } = {}) {
    super('retryable', code, message, options);
  }
}

export class TransientError extends GitopsError {
  constructor(code: string, message: string, options: { cause?: unknown; data?: Record<string, unknown> } = {}) {
    super('transient', code, message, options);
  }
}

/** A message for any thrown value, safe to log (callers must not put secrets in messages). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A problem as every status, error message and log names one: structurally the wire's
 * `ProblemReport` (src/protocol/messages.ts), defined here so that common/ and the agent's reconcile
 * core depend on nothing above them. `code` is one of src/protocol/problems.ts.
 */
export interface Problem {
  code: string;
  message: string;
  /** File (relative to the manifest or config root) and 1-based line, when the problem has a place. */
  file?: string;
  line?: number;
  /** The object id (`Kind/namespace/name`) when the problem is about one object. */
  object?: string;
}

/**
 * The one conversion of a thrown value into a problem: a GitopsError keeps its own code (the
 * API server's or the Git host's answer is what a person needs), anything else gets
 * `fallbackCode` (a code of src/protocol/problems.ts). With `objectId` the message starts with the
 * id (once: messages that already name it are left alone) and `object` is set.
 */
export function problemOf(err: unknown, fallbackCode: string, objectId?: string): Problem {
  const code = err instanceof GitopsError ? err.code : fallbackCode;
  const raw = errorMessage(err);
  if (objectId === undefined) return { code, message: raw };
  return { code, message: raw.startsWith(objectId) ? raw : `${objectId}: ${raw}`, object: objectId };
}
