#!/usr/bin/env node
import { limitYoungGeneration } from '../src/agent/memory.js';

// Before anything else is loaded: module loading alone grows the young generation to 16 MiB,
// which the long-running `run` then holds for ever while idle (see src/agent/memory.ts).
if (process.argv[2] === 'run') limitYoungGeneration();
const { buildAgentCli } = await import('../src/agent/cli.js');

await buildAgentCli().parseAsync(process.argv);
