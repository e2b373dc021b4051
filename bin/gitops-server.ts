#!/usr/bin/env node
import { processStopSignals } from '../src/common/process-guards.js';

// Before anything else is loaded (about half a second): a SIGTERM during start-up must stop the
// daemon, not be ignored as PID 1 ignores signals it has no handler for (see process-guards.ts).
if (process.argv[2] === 'serve') processStopSignals();
const { buildServerCli } = await import('../src/server/cli.js');

await buildServerCli().parseAsync(process.argv);
