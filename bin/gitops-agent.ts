#!/usr/bin/env node
import { buildAgentCli } from '../src/agent/cli.js';

await buildAgentCli().parseAsync(process.argv);
