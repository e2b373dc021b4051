/**
 * Agent tokens: the secret an agent is given once by `gitops-server agent create`.
 *
 * Format (documented in docs/protocol.md):
 *
 *     gitops_agent_<71 base64url characters>
 *
 * The 71 characters encode 53 bytes: a format version byte (1), the 16-byte agent id, the 32-byte
 * Ed25519 private key seed, and a CRC-32 of those 49 bytes. The fixed prefix plus fixed length let
 * secret scanners match tokens with `gitops_agent_[A-Za-z0-9_-]{71}` and the checksum lets them
 * reject look-alikes without asking the server. The server stores only the public key, so a leaked
 * server state file lets nobody sign as an agent.
 *
 * Errors never contain the token or any part of it.
 */
import { createPrivateKey, createPublicKey, randomBytes, type KeyObject } from 'node:crypto';
import { UserError } from '../common/errors.js';

/** Prefix that secret scanners can match. */
export const TOKEN_PREFIX = 'gitops_agent_';
/** Regular expression matching a whole token (for scanners, docs and tests). */
export const TOKEN_PATTERN = /^gitops_agent_[A-Za-z0-9_-]{71}$/;
const FORMAT_VERSION = 1;
const ID_BYTES = 16;
const SEED_BYTES = 32;
const BODY_BYTES = 1 + ID_BYTES + SEED_BYTES;
/** PKCS#8 DER header for an Ed25519 private key; the 32-byte seed follows it. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** A token that cannot be used; `code` says why. The message never includes the token. */
export class InvalidTokenError extends UserError {
  constructor(code: string, message: string) {
    super(code, message);
  }
}

export interface ParsedToken {
  /** Agent id: 32 lowercase hex characters; the JWT `kid`. */
  agentId: string;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface GeneratedToken extends ParsedToken {
  token: string;
  /** Raw 32-byte Ed25519 public key, base64url (the JWK `x`), which the server stores. */
  publicKeyX: string;
}

/** A new agent id, 16 random bytes as hex. */
export function newAgentId(): string {
  return randomBytes(ID_BYTES).toString('hex');
}

/** Makes a key pair and the token for an agent (a new id unless one is given). */
export function generateToken(agentId: string = newAgentId()): GeneratedToken {
  if (!/^[0-9a-f]{32}$/.test(agentId))
    throw new InvalidTokenError('TOKEN_BAD_AGENT_ID', 'agent id must be 32 lowercase hex characters');
  const seed = randomBytes(SEED_BYTES);
  const body = Buffer.concat([Buffer.from([FORMAT_VERSION]), Buffer.from(agentId, 'hex'), seed]);
  const sum = Buffer.alloc(4);
  sum.writeUInt32BE(crc32(body));
  const token = TOKEN_PREFIX + Buffer.concat([body, sum]).toString('base64url');
  const keys = keysFromSeed(seed);
  return { token, agentId, ...keys, publicKeyX: publicKeyX(keys.publicKey) };
}

/** Reads a token (surrounding whitespace allowed, as from a mounted Secret file). */
export function parseToken(text: string): ParsedToken {
  const token = text.trim();
  if (!token.startsWith(TOKEN_PREFIX)) {
    throw new InvalidTokenError(
      'TOKEN_BAD_PREFIX',
      `agent token must start with "${TOKEN_PREFIX}" (is this the token printed by "gitops-server agent create"?)`,
    );
  }
  if (!TOKEN_PATTERN.test(token)) {
    throw new InvalidTokenError(
      'TOKEN_BAD_LENGTH',
      `agent token must be "${TOKEN_PREFIX}" followed by 71 base64url characters; it was truncated or altered`,
    );
  }
  const raw = Buffer.from(token.slice(TOKEN_PREFIX.length), 'base64url');
  const body = raw.subarray(0, BODY_BYTES);
  if (raw.readUInt32BE(BODY_BYTES) !== crc32(body)) {
    throw new InvalidTokenError(
      'TOKEN_BAD_CHECKSUM',
      'agent token checksum does not match; it was mistyped or altered',
    );
  }
  if (body[0] !== FORMAT_VERSION) {
    throw new InvalidTokenError(
      'TOKEN_BAD_VERSION',
      `agent token format ${body[0]} is not supported (this build reads format ${FORMAT_VERSION})`,
    );
  }
  const agentId = body.subarray(1, 1 + ID_BYTES).toString('hex');
  const keys = keysFromSeed(body.subarray(1 + ID_BYTES));
  return { agentId, ...keys };
}

/** Public key object from the stored raw key (base64url `x`). */
export function publicKeyFromX(x: string): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
}

function keysFromSeed(seed: Buffer): { privateKey: KeyObject; publicKey: KeyObject } {
  const privateKey = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

function publicKeyX(key: KeyObject): string {
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('Ed25519 public key export has no x');
  return jwk.x;
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
