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
  'token', '*.token', 'authorization', '*.authorization', 'headers.authorization',
  'password', '*.password', 'secret', '*.secret', 'privateKey', '*.privateKey',
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
          dest.write(line + '\n');
          continue;
        }
        const { time, level, msg, name, ...fields } = rec;
        const extra = Object.entries(fields)
          .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
          .join(' ');
        dest.write(`${String(time)} ${String(level).toUpperCase()}${name ? ` [${String(name)}]` : ''} ${String(msg)}${extra ? ' ' + extra : ''}\n`);
      }
      done();
    },
  });
}

/** A logger that drops everything, for library callers and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
