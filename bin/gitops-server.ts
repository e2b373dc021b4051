#!/usr/bin/env node
import { buildServerCli } from '../src/server/cli.js';

await buildServerCli().parseAsync(process.argv);
