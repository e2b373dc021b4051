/**
 * Structured logging: a constant message plus fields (`log.info({commit, project}, 'detected commit')`),
 * JSON lines by default, a compact human format with `text`. Child loggers are bound per agent
 * and per project. Known secret-bearing fields are redacted whatever a caller passes.
 */
import { Writable } from 'node:stream';
import { pino, type Logger as PinoLogger, type DestinationStream } from 'pino';

export type Logger = PinoLogger;
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
export type LogFormat = 'json' | 'text';
export const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

const REDACT_PATHS = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'privateKey',
  '*.privateKey',
];

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  name?: string;
  /** Where lines go; stderr by default so stdout stays free for command output. */
  destination?: DestinationStream | NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const dest = options.destination ?? process.stderr;
  const stream = options.format === 'text' ? textStream(dest) : dest;
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    },
    stream as DestinationStream,
  );
}

/**
 * C0 and C1 control characters (newlines, ESC, CSI), DEL, and the Unicode line/paragraph
 * separators: what could end a line or drive a terminal. JSON.stringify escapes only C0.
 */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
const NEEDS_QUOTES = /[\s"=\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const SHORT_ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** Control characters as visible escapes (`\n`, `\u001b`), so a value cannot forge a line or a terminal sequence. */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => SHORT_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * One `key=value` value of a text line: bare when it is a plain word, else a JSON string (quoted,
 * escaped), so that an agent-supplied value cannot add fields or lines of its own.
 */
export function textValue(value: unknown): string {
  if (typeof value === 'string')
    return value !== '' && !NEEDS_QUOTES.test(value) ? value : escapeControl(JSON.stringify(value));
  return escapeControl(JSON.stringify(value) ?? String(value));
}

/** `2026-11-25T22:00:00.000Z INFO detected commit project=x commit=abc` for people at a terminal. */
function textStream(dest: DestinationStream | NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line) continue;
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line) as Record<string, unknown>;
        } catch {
          dest.write(escapeControl(line) + '\n');
          continue;
        }
        const { time, level, msg, name, ...fields } = rec;
        const extra = Object.entries(fields)
          .map(([k, v]) => `${NEEDS_QUOTES.test(k) ? escapeControl(JSON.stringify(k)) : k}=${textValue(v)}`)
          .join(' ');
        const head = `${String(time)} ${String(level).toUpperCase()}${name ? ` [${String(name)}]` : ''} ${String(msg)}`;
        dest.write(`${escapeControl(head)}${extra ? ' ' + extra : ''}\n`);
      }
      done();
    },
  });
}

/** A logger that drops everything, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
