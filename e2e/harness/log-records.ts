/**
 * Reading the JSON log files of the product's processes (pino, one object a line), for the e2e
 * stack, the e2e tests that start their own processes, and the bench. Plain Node, no jest and no
 * Kubernetes client, so bench code can import it.
 */
import { readFile } from 'node:fs/promises';

/** One parsed JSON log line of a server or agent process. */
export type LogRecord = Record<string, unknown> & { msg?: string };

/** Parses complete JSON lines of a log file (a line being written is skipped; a missing file is empty). */
export async function readLogRecords(logPath: string): Promise<LogRecord[]> {
  const text = await readFile(logPath, 'utf8').catch(() => '');
  const out: LogRecord[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as LogRecord);
    } catch {
      // a line being written
    }
  }
  return out;
}
