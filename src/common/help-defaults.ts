/**
 * `--help` that shows the default in force. Commander prints an option's built-in default even
 * when the option's environment variable is set, so `serve --help` in the image (which sets
 * GITOPS_SERVER_STATE_DIR=/var/lib/gitops-server) showed a home folder that was not used.
 * `inForceHelp()` is a commander help configuration (`command.configureHelp(inForceHelp())`) whose
 * option descriptions end in
 *
 * - `(default: "VALUE" from ENV)` when the variable is set (what the program will use),
 * - `(default: "VALUE", env: ENV)` when it is not (commander's own wording).
 *
 * Options with commander's `.env()` need nothing more. Options whose variable the command reads
 * itself (`gitops-agent run`, whose booleans take "false") carry the same facts through
 * `helpDefault()`. A value shown is bounded and never carries URL credentials or query strings.
 */
import type { Option } from 'commander';

export interface HelpDefault {
  /** The environment variable the command reads for this option. */
  envVar: string;
  /** The default when neither the flag nor the variable is given, as shown (may be prose). */
  default?: string;
  /** What a set variable means, instead of `default: "VALUE" from ENV` (booleans). */
  inForce?: (value: string) => string;
}

type Env = Record<string, string | undefined>;

const notes = new WeakMap<Option, HelpDefault>();

/** Attaches help facts to an option whose variable the command reads itself; returns the option. */
export function helpDefault<T extends Option>(option: T, note: HelpDefault): T {
  notes.set(option, note);
  return option;
}

const MAX_SHOWN = 200;

/** An environment value as help shows it: JSON-quoted, bounded, without URL credentials or query. */
export function shownValue(value: string): string {
  let shown = value;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value)) {
    try {
      const url = new URL(value);
      if (url.username || url.password) {
        url.username = '***';
        url.password = '';
      }
      const query = url.search ? '?…' : '';
      url.search = '';
      url.hash = '';
      shown = url.toString() + query;
    } catch {
      // not a URL after all: shown as it is
    }
  }
  return JSON.stringify(shown.length > MAX_SHOWN ? `${shown.slice(0, MAX_SHOWN)}…` : shown);
}

/** Commander's own choice of showing a default: options taking a value, and booleans with one. */
function builtInDefault(option: Option): string | undefined {
  if (option.defaultValue === undefined) return undefined;
  const shows = option.required || option.optional || (option.isBoolean() && typeof option.defaultValue === 'boolean');
  return shows ? (option.defaultValueDescription ?? JSON.stringify(option.defaultValue)) : undefined;
}

/** The help line of one option, with the default in force (see the header). */
export function describeOption(option: Option, env: Env): string {
  const extra: string[] = [];
  if (option.argChoices) extra.push(`choices: ${option.argChoices.map((c) => JSON.stringify(c)).join(', ')}`);
  const note = notes.get(option);
  const envVar = option.envVar ?? note?.envVar;
  const fallback = builtInDefault(option) ?? note?.default;
  const value = envVar !== undefined ? env[envVar] : undefined;
  if (envVar !== undefined && value !== undefined) {
    if (note?.inForce) extra.push(note.inForce(value));
    // Commander sets a boolean option from its variable whatever the value (command.js, _parseOptionsEnv).
    else if (option.envVar !== undefined && !option.required && !option.optional) extra.push(`on: ${envVar} is set`);
    else extra.push(`default: ${shownValue(value)} from ${envVar}`);
  } else {
    if (fallback !== undefined) extra.push(`default: ${fallback}`);
    if (envVar !== undefined) extra.push(`env: ${envVar}`);
  }
  if (!extra.length) return option.description;
  return option.description ? `${option.description} (${extra.join(', ')})` : `(${extra.join(', ')})`;
}

/** Help configuration for `command.configureHelp()`; reads `env` when help is printed. */
export function inForceHelp(env: Env = process.env): { optionDescription(option: Option): string } {
  return { optionDescription: (option) => describeOption(option, env) };
}
