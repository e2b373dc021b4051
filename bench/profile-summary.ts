/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [TOP]`: the functions with the most self
 * time in a V8 CPU profile (from `node --cpu-prof`), with their share of the samples, and the
 * same grouped by package or source folder: enough to see where a missed goal's time went
 * without opening DevTools.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a script comes from: `pkg:<name>` for node_modules, else its folder under the repo. */
export function origin(url: string): string {
  const mod = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (mod) return `pkg:${mod[1]}`;
  if (!url) return '(native/gc/idle)';
  if (url.startsWith('node:')) return 'node:internals';
  const m = /\/dist\/(.*)\/[^/]+$/.exec(url);
  return m ? m[1] : url;
}

function main(): void {
  const [file, topArg] = process.argv.slice(2);
  if (!file) {
    process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  const top = Number(topArg ?? 20);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const node = byId.get(id);
    if (!node) return;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = `${functionName || '(anonymous)'} ${url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${lineNumber + 1}`;
    self.set(name, (self.get(name) ?? 0) + dt);
    const o = functionName === '(idle)' ? '(idle)' : origin(url);
    byOrigin.set(o, (byOrigin.get(o) ?? 0) + dt);
    total += dt;
  });
  const busy = total - (byOrigin.get('(idle)') ?? 0);
  const pct = (us: number): string => `${((100 * us) / Math.max(busy, 1)).toFixed(1)}%`.padStart(6);
  process.stdout.write(
    `${file}: ${(total / 1e6).toFixed(2)} s sampled, ${(busy / 1e6).toFixed(2)} s not idle (shares below are of the non-idle time)\n\nby origin:\n`,
  );
  for (const [o, us] of [...byOrigin]
    .filter(([o]) => o !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, 12))
    process.stdout.write(`  ${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${o}\n`);
  process.stdout.write('\nby function (self time):\n');
  for (const [name, us] of [...self]
    .filter(([n]) => !n.startsWith('(idle)'))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    process.stdout.write(`  ${pct(us)}  ${(us / 1000).toFixed(0).padStart(7)} ms  ${name}\n`);
}

main();
