/**
 * The bench's command line and its readable table, pure so they can be tested: argv → options
 * (defaults, --quick sizes, every mistake named), results → the stderr table.
 */
import path from 'node:path';
import { SCENARIOS, type BenchOptions, type ScenarioName, type ScenarioResult } from './context.js';

export const USAGE = `usage: npm run bench -- [--scenario ${SCENARIOS.join(',')}] [--objects N] [--agents K] [--quick] [--json FILE]`;

/** Parses argv; throws with the usage on anything unknown. */
export function parseArgs(argv: string[]): BenchOptions {
  let scenarios: ScenarioName[] = [...SCENARIOS];
  let objects: number | undefined;
  let agents: number | undefined;
  let quick = false;
  let json: string | undefined;
  const positive = (flag: string, v: string | undefined): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`${flag}: expected a positive integer, got ${String(v)}\n${USAGE}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes('=')
      ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
      : [arg, undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--scenario':
      case '--scenarios': {
        const names = (value() ?? '')
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
        if (unknown.length || names.length === 0)
          throw new Error(
            `--scenario: unknown ${unknown.join(', ') || '(none given)'}; choose from ${SCENARIOS.join(', ')}`,
          );
        scenarios = SCENARIOS.filter((s) => names.includes(s));
        break;
      }
      case '--objects':
        objects = positive(flag, value());
        break;
      case '--agents':
        agents = positive(flag, value());
        break;
      case '--quick':
        quick = true;
        break;
      case '--json':
        json = value();
        if (!json) throw new Error(`--json: a file name is required\n${USAGE}`);
        break;
      case '-h':
      case '--help':
        throw new HelpRequested(USAGE);
      default:
        throw new Error(`unknown argument ${arg}\n${USAGE}`);
    }
  }
  return {
    scenarios,
    objects: objects ?? (quick ? 100 : 1000),
    agents: agents ?? (quick ? 100 : 1000),
    edits: quick ? 40 : 200,
    commits: quick ? 10 : 50,
    rollouts: quick ? 3 : 10,
    quick,
    ...(json ? { json: path.resolve(json) } : {}),
  };
}

const fmt = (v: number | undefined): string => (v === undefined ? '' : Number.isFinite(v) ? String(v) : 'n/a');

/** The readable table: one block per scenario, each metric beside its goal, baselines after. */
export function renderTable(results: ScenarioResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    if (r.skipped !== undefined) {
      lines.push(`${r.scenario}  SKIPPED: ${r.skipped}`);
      continue;
    }
    lines.push(
      `${r.scenario} (N=${r.objects})  ${r.pass ? 'meets its goals' : 'MISSES a goal'}  load ${r.load.join(' ')}`,
    );
    const width = Math.max(...Object.keys(r.metrics).map((k) => k.length), 8);
    for (const [name, value] of Object.entries(r.metrics)) {
      const goal = r.goals[name];
      const verdict = goal ? (value <= goal.max ? 'ok' : 'MISSED') : '';
      lines.push(
        `  ${name.padEnd(width)}  ${fmt(value).padStart(10)}  ${goal ? `goal <= ${goal.max}`.padEnd(14) : ''.padEnd(14)}${verdict}`,
      );
    }
    lines.push(
      `  baseline: ${Object.entries(r.baseline)
        .map(([k, v]) => `${k}=${fmt(v)}`)
        .join('  ')}`,
    );
    for (const note of r.notes ?? []) lines.push(`  note: ${note}`);
  }
  return lines.join('\n');
}

/** Thrown by {@link parseArgs} for -h/--help: the caller prints the usage and exits 0. */
export class HelpRequested extends Error {}
