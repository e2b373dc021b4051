/**
 * Boolean environment variables (`GITOPS_SERVER_INSECURE_PLAINTEXT`, `GITOPS_AGENT_LEADER_ELECT`,
 * ...), read one way by both programs. Not through commander's `.env()`, which turns a boolean
 * option on whenever its variable exists, so `GITOPS_SERVER_INSECURE_PLAINTEXT=false` would turn
 * plain text on. A value that is no boolean word is a problem, not a guess: `flase` must not
 * quietly mean true for a switch that turns TLS off.
 */

const TRUE = /^(1|true|yes|on)$/i;
const FALSE = /^(0|false|no|off)$/i;

/** true, false, undefined when unset or empty, or null when the value is no boolean word. */
export function parseEnvFlag(value: string | undefined): boolean | undefined | null {
  if (value === undefined || value.trim() === '') return undefined;
  if (TRUE.test(value.trim())) return true;
  if (FALSE.test(value.trim())) return false;
  return null;
}

/** The variable's boolean, or undefined when unset; an unknown word is reported through `problem`. */
export function readEnvFlag(
  env: Record<string, string | undefined>,
  name: string,
  problem: (text: string) => void,
): boolean | undefined {
  const parsed = parseEnvFlag(env[name]);
  if (parsed !== null) return parsed;
  problem(
    `${name}=${JSON.stringify(String(env[name]).slice(0, 40))}: expected true or false (also 1/0, yes/no, on/off)`,
  );
  return undefined;
}
