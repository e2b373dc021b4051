#!/usr/bin/env node
import { processStopSignals } from '../src/common/process-guards.js';
import { limitYoungGeneration } from '../src/agent/memory.js';

if (process.argv[2] === 'run') {
  // Before anything else is loaded: module loading alone grows the young generation to 16 MiB,
  // which the long-running `run` then holds for ever while idle (see src/agent/memory.ts).
  limitYoungGeneration();
  // And loading takes about half a second: a SIGTERM meanwhile must stop the agent, not be
  // ignored as PID 1 ignores signals it has no handler for (see src/common/process-guards.ts).
  processStopSignals();
}
const { buildAgentCli } = await import('../src/agent/cli.js');

await buildAgentCli().parseAsync(process.argv);
