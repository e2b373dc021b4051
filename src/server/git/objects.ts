/**
 * A bounded reader for a Git object store (loose objects and pack files with .idx v2), used for
 * every read of commits, trees and blobs at a commit. It learns an object's type and size from
 * its header before reading it: the first bytes of a loose object's zlib stream (`blob <size>\0`),
 * or a packed object's type+size header at the offset the .idx gives (for a delta, the result size
 * from the first inflated bytes of the delta). An object over the caller's limit is refused before
 * anything is inflated, so a tenant's 512 MiB file costs a few kilobytes of reading.
 *
 * Unlike isomorphic-git's `cache`, which keeps whole pack files in memory for as long as a project
 * is followed, this reads each packed object with positioned reads of its own bytes and keeps only
 * the .idx files (about 28 bytes per object) and a small, byte-bounded cache of delta bases.
 */
import { createHash } from 'node:crypto';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import { GitopsError, UserError } from '../../common/errors.js';

export type ObjectType = 'commit' | 'tree' | 'blob' | 'tag';

export interface ObjectHeader {
  type: ObjectType;
  /** Size of the object's content in bytes (after inflating and applying deltas). */
  size: number;
}

export interface GitObject {
  type: ObjectType;
  content: Buffer;
}

export interface ObjectReaderOptions {
  /** Largest delta base inflated to rebuild a deltified object (default 32 MiB). */
  maxBaseBytes?: number;
  /** Bytes of inflated delta bases kept for reuse (default 8 MiB). */
  baseCacheBytes?: number;
}

/** Thrown by `read` when the object is larger than the caller's limit; `size` is its size. */
export class ObjectTooLargeError extends GitopsError {
  constructor(
    readonly oid: string,
    readonly size: number,
    readonly limit: number,
  ) {
    super('user', 'GIT_OBJECT_TOO_LARGE', `object ${oid}: ${size} bytes, over the limit of ${limit}`, {
      data: { oid, bytes: size },
    });
  }
}

const PACK_TYPES: Record<number, ObjectType | 'ofs-delta' | 'ref-delta'> = {
  1: 'commit',
  2: 'tree',
  3: 'blob',
  4: 'tag',
  6: 'ofs-delta',
  7: 'ref-delta',
};
const OID = /^[0-9a-f]{40}$/;
/** The empty tree, which Git treats as present in every repository. */
const EMPTY_TREE = '4b825dc642cb6eb9a060e54bf8d69288fbee4904';
/** Most deltas in a chain (Git's pack.depth maximum is 4095). */
const MAX_DELTA_DEPTH = 4096;

function corrupt(what: string): UserError {
  return new UserError('GIT_CORRUPT_OBJECT', what);
}

/** A parsed .idx v2: the whole file (binary-searched in place) and its offsets in pack order. */
interface PackIndex {
  idx: Buffer;
  count: number;
  packPath: string;
  packSize: number;
  /** Offsets sorted ascending, so an entry ends where the next begins. */
  sortedOffsets: Float64Array;
}

/** Parse a pack .idx version 2 (fanout, names, CRCs, 32-bit offsets, 64-bit offset table). */
export function parsePackIndex(idx: Buffer, packPath: string, packSize: number): PackIndex {
  if (idx.length < 8 + 256 * 4 + 40 || idx.readUInt32BE(0) !== 0xff744f63 || idx.readUInt32BE(4) !== 2) {
    throw corrupt(`${path.basename(packPath)}: not a version 2 pack index`);
  }
  const count = idx.readUInt32BE(8 + 255 * 4);
  if (idx.length < 8 + 1024 + count * 28 + 40) throw corrupt(`${path.basename(packPath)}: truncated pack index`);
  const index: PackIndex = { idx, count, packPath, packSize, sortedOffsets: new Float64Array(count) };
  for (let i = 0; i < count; i++) index.sortedOffsets[i] = offsetAt(index, i);
  index.sortedOffsets.sort();
  return index;
}

function offsetAt(index: PackIndex, i: number): number {
  const base = 8 + 1024 + index.count * 24;
  const small = index.idx.readUInt32BE(base + i * 4);
  if ((small & 0x80000000) === 0) return small;
  // The high bit says: an index into the table of 64-bit offsets that follows (packs over 2 GiB).
  const large = base + index.count * 4 + (small & 0x7fffffff) * 8;
  if (large + 8 > index.idx.length - 40) throw corrupt(`${path.basename(index.packPath)}: bad 64-bit offset`);
  return Number(index.idx.readBigUInt64BE(large));
}

/** The object's offset in the pack, or undefined when the pack does not hold it. */
export function findOffset(index: PackIndex, oid: string): number | undefined {
  const want = Buffer.from(oid, 'hex');
  const first = want[0];
  let lo = first === 0 ? 0 : index.idx.readUInt32BE(8 + (first - 1) * 4);
  let hi = index.idx.readUInt32BE(8 + first * 4);
  const names = 8 + 1024;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const cmp = index.idx.compare(want, 0, 20, names + mid * 20, names + mid * 20 + 20);
    if (cmp === 0) return offsetAt(index, mid);
    if (cmp < 0) lo = mid + 1;
    else hi = mid;
  }
  return undefined;
}

/** Where a pack entry ends: the next entry's offset, or the pack's trailing checksum. */
function entryEnd(index: PackIndex, offset: number): number {
  const o = index.sortedOffsets;
  let lo = 0;
  let hi = o.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (o[mid] <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo < o.length ? o[lo] : index.packSize - 20;
}

/** Decode a pack entry header: type, size, and where the rest (delta reference, then zlib data) starts. */
export function parseEntryHeader(buf: Buffer): { type: number; size: number; used: number } {
  let byte = buf[0];
  const type = (byte >> 4) & 7;
  let size = byte & 15;
  let shift = 4;
  let used = 1;
  while (byte & 0x80) {
    if (used >= buf.length || shift > 49) throw corrupt('bad pack entry header');
    byte = buf[used++];
    size += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  }
  return { type, size, used };
}

/** The OFS_DELTA distance back to the base (Git's "offset encoding": each continuation adds one). */
function parseOfsDistance(buf: Buffer, at: number): { distance: number; used: number } {
  let i = at;
  let byte = buf[i++];
  let distance = byte & 0x7f;
  while (byte & 0x80) {
    if (i >= buf.length || distance > 2 ** 45) throw corrupt('bad delta offset');
    byte = buf[i++];
    distance = (distance + 1) * 128 + (byte & 0x7f);
  }
  return { distance, used: i - at };
}

/** A delta's little-endian size varint (base size, then result size). */
function deltaVarint(buf: Buffer, at: number): { value: number; next: number } {
  let value = 0;
  let shift = 0;
  let i = at;
  for (;;) {
    if (i >= buf.length || shift > 49) throw corrupt('bad delta size');
    const byte = buf[i++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (!(byte & 0x80)) return { value, next: i };
  }
}

/** The result size a delta announces, from the first inflated bytes of it. */
function deltaResultSize(compressedPrefix: Buffer): number {
  const delta = inflatePrefix(compressedPrefix);
  return deltaVarint(delta, deltaVarint(delta, 0).next).value;
}

/** Apply a Git delta to its base. */
export function applyDelta(delta: Buffer, base: Buffer): Buffer {
  const baseSize = deltaVarint(delta, 0);
  const resultSize = deltaVarint(delta, baseSize.next);
  if (baseSize.value !== base.length)
    throw corrupt(`delta expects a base of ${baseSize.value} bytes, got ${base.length}`);
  const out = Buffer.allocUnsafe(resultSize.value);
  let o = 0;
  let i = resultSize.next;
  while (i < delta.length) {
    const op = delta[i++];
    if (op & 0x80) {
      let offset = 0;
      let size = 0;
      for (let b = 0; b < 4; b++) if (op & (1 << b)) offset += delta[i++] * 2 ** (8 * b);
      for (let b = 0; b < 3; b++) if (op & (1 << (4 + b))) size += delta[i++] * 2 ** (8 * b);
      if (size === 0) size = 0x10000;
      if (offset + size > base.length || o + size > out.length)
        throw corrupt('delta copies outside its base or result');
      base.copy(out, o, offset, offset + size);
      o += size;
    } else if (op > 0) {
      if (i + op > delta.length || o + op > out.length) throw corrupt('delta inserts past its end');
      delta.copy(out, o, i, i + op);
      o += op;
      i += op;
    } else {
      throw corrupt('delta has a reserved opcode');
    }
  }
  if (o !== out.length) throw corrupt(`delta built ${o} bytes, announced ${out.length}`);
  return out;
}

/** Inflate the first bytes of a zlib stream (as much as `compressed` holds). */
function inflatePrefix(compressed: Buffer): Buffer {
  try {
    return zlib.inflateSync(compressed, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  } catch (err) {
    throw corrupt(`bad zlib data: ${(err as Error).message}`);
  }
}

/** Inflate a whole zlib stream that must produce exactly `size` bytes. */
function inflateExact(compressed: Buffer, size: number, what: string): Buffer {
  let out: Buffer;
  try {
    out = zlib.inflateSync(compressed, { maxOutputLength: Math.max(size, 1) });
  } catch (err) {
    throw corrupt(`${what}: bad zlib data: ${(err as Error).message}`);
  }
  if (out.length !== size) throw corrupt(`${what}: inflated to ${out.length} bytes, announced ${size}`);
  return out;
}

async function readAt(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

interface Located {
  index: PackIndex;
  offset: number;
}

/** One object store (`gitdir`). Cheap to keep per project; safe for concurrent use. */
export class ObjectReader {
  private readonly packs = new Map<string, Promise<PackIndex>>();
  private readonly bases = new Map<string, GitObject>();
  private baseBytes = 0;
  private readonly maxBaseBytes: number;
  private readonly baseCacheBytes: number;

  constructor(
    readonly gitdir: string,
    options: ObjectReaderOptions = {},
  ) {
    this.maxBaseBytes = options.maxBaseBytes ?? 32 * 1024 * 1024;
    this.baseCacheBytes = options.baseCacheBytes ?? 8 * 1024 * 1024;
  }

  /** Type and size of an object, or undefined when the store does not have it. Reads a few KiB at most. */
  async header(oid: string): Promise<ObjectHeader | undefined> {
    checkOid(oid);
    if (oid === EMPTY_TREE) return { type: 'tree', size: 0 };
    const loose = await this.looseHeader(oid);
    if (loose) return loose.header;
    const at = await this.locate(oid);
    return at ? this.packedHeader(at, oid) : undefined;
  }

  /** True when the store has the object and it is a commit. */
  async hasCommit(oid: string): Promise<boolean> {
    try {
      return (await this.header(oid))?.type === 'commit';
    } catch {
      return false;
    }
  }

  /** The object, or undefined when absent; ObjectTooLargeError (before inflating it) when over `maxBytes`. */
  async read(oid: string, maxBytes: number): Promise<GitObject | undefined> {
    checkOid(oid);
    if (oid === EMPTY_TREE) return { type: 'tree', content: Buffer.alloc(0) };
    const loose = await this.looseHeader(oid);
    if (loose) {
      if (loose.header.size > maxBytes) throw new ObjectTooLargeError(oid, loose.header.size, maxBytes);
      return this.readLoose(oid, loose.file, loose.header);
    }
    const at = await this.locate(oid);
    if (!at) return undefined;
    const header = await this.packedHeader(at, oid);
    if (header.size > maxBytes) throw new ObjectTooLargeError(oid, header.size, maxBytes);
    return this.readPacked(at, 0);
  }

  // ---- loose objects ----

  private async looseHeader(oid: string): Promise<{ file: string; header: ObjectHeader } | undefined> {
    const file = path.join(this.gitdir, 'objects', oid.slice(0, 2), oid.slice(2));
    let fh;
    try {
      fh = await open(file, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR')
        return undefined;
      throw err;
    }
    try {
      // The header is the first few bytes inflated; a Huffman table may come first, so read more if needed.
      for (let want = 512; want <= 64 * 1024; want *= 4) {
        const buf = Buffer.alloc(want);
        const { bytesRead } = await fh.read(buf, 0, want, 0);
        const head = inflatePrefix(buf.subarray(0, bytesRead));
        const nul = head.indexOf(0);
        if (nul >= 0) return { file, header: parseLooseHeader(head.subarray(0, nul), oid) };
        if (bytesRead < want || head.length > 64) break;
      }
      throw corrupt(`object ${oid}: no header in the loose object`);
    } finally {
      await fh.close();
    }
  }

  private async readLoose(oid: string, file: string, header: ObjectHeader): Promise<GitObject> {
    const prefix = `${header.type} ${header.size}\0`.length;
    const { size: onDisk } = await stat(file);
    // Deflate never grows data by more than a few bytes per 16 KiB block.
    if (onDisk > header.size + prefix + 1024 + header.size / 100)
      throw corrupt(`object ${oid}: ${onDisk} bytes on disk for ${header.size} bytes of content`);
    const raw = inflateExact(await readFile(file), prefix + header.size, `object ${oid}`);
    if (createHash('sha1').update(raw).digest('hex') !== oid)
      throw corrupt(`object ${oid}: content does not match its id`);
    return { type: header.type, content: raw.subarray(prefix) };
  }

  // ---- packs ----

  private async locate(oid: string): Promise<Located | undefined> {
    const dir = path.join(this.gitdir, 'objects', 'pack');
    const names = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.idx'));
    // Forget packs that are gone (a cache repository started over, `git gc`).
    for (const known of this.packs.keys()) if (!names.includes(path.basename(known))) this.packs.delete(known);
    for (const name of names) {
      const idxPath = path.join(dir, name);
      let p = this.packs.get(idxPath);
      if (!p) {
        p = this.loadIndex(idxPath);
        this.packs.set(idxPath, p);
        p.catch(() => this.packs.delete(idxPath));
      }
      let index: PackIndex;
      try {
        index = await p;
      } catch (err) {
        // A pack being written (its .idx before its .pack) is skipped, not fatal.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
      const offset = findOffset(index, oid);
      if (offset !== undefined) return { index, offset };
    }
    return undefined;
  }

  private async loadIndex(idxPath: string): Promise<PackIndex> {
    const packPath = idxPath.replace(/\.idx$/, '.pack');
    const [idx, packStat] = await Promise.all([readFile(idxPath), stat(packPath)]);
    return parsePackIndex(idx, packPath, packStat.size);
  }

  /** Entry header of a packed object; for a delta, the result size from the delta's first bytes. */
  private async packedHeader(at: Located, oid: string): Promise<ObjectHeader> {
    const entry = await this.entry(at, 1024);
    if (entry.kind === 'whole') return { type: entry.type, size: entry.size };
    // The type is the base's: walk down the chain for it, reading headers only.
    return { type: await this.chainType(entry.base, oid), size: deltaResultSize(entry.compressed) };
  }

  private async chainType(start: Located | string, oid: string): Promise<ObjectType> {
    let current: Located | string = start;
    for (let depth = 0; depth < MAX_DELTA_DEPTH; depth++) {
      if (typeof current === 'string') {
        const h = await this.header(current);
        if (!h) throw corrupt(`object ${oid}: delta base ${current} is missing`);
        return h.type;
      }
      const entry = await this.entry(current, 0);
      if (entry.kind === 'whole') return entry.type;
      current = entry.base;
    }
    throw corrupt(`object ${oid}: delta chain too deep`);
  }

  /**
   * Read a pack entry's header and `prefixBytes` of its zlib data (or all of it when
   * prefixBytes is Infinity): a whole object, or a delta and where its base is.
   */
  private async entry(
    at: Located,
    prefixBytes: number,
  ): Promise<
    | { kind: 'whole'; type: ObjectType; size: number; compressed: Buffer }
    | { kind: 'delta'; size: number; base: Located | string; compressed: Buffer }
  > {
    const pack = at.index.packPath;
    const where = `${path.basename(pack)} at ${at.offset}`;
    const end = entryEnd(at.index, at.offset);
    if (end <= at.offset) throw corrupt(`${where}: entry has no data`);
    const first = await readAt(
      pack,
      at.offset,
      Math.min(end - at.offset, prefixBytes === Infinity ? 64 * 1024 : 32 + prefixBytes),
    );
    const { type, size, used } = parseEntryHeader(first);
    const kind = PACK_TYPES[type];
    if (!kind) throw corrupt(`${where}: entry has type ${type}`);
    let rel = used;
    let base: Located | string | undefined;
    if (kind === 'ofs-delta') {
      const { distance, used: n } = parseOfsDistance(first, used);
      if (distance <= 0 || distance > at.offset) throw corrupt(`${where}: bad delta base`);
      base = { index: at.index, offset: at.offset - distance };
      rel += n;
    } else if (kind === 'ref-delta') {
      if (first.length < used + 20) throw corrupt(`${where}: truncated entry`);
      const baseOid = first.subarray(used, used + 20).toString('hex');
      const inPack = findOffset(at.index, baseOid);
      base = inPack !== undefined ? { index: at.index, offset: inPack } : baseOid;
      rel += 20;
    }
    const compressedLength = end - (at.offset + rel);
    // Stored deflate blocks cost 5 bytes per 64 KiB: anything much larger is not this entry's data.
    if (compressedLength < 0 || compressedLength > size + 1024 + size / 100)
      throw corrupt(`${where}: entry spans ${compressedLength} bytes for ${size}`);
    const wanted = Math.min(compressedLength, prefixBytes);
    const compressed =
      rel + wanted <= first.length ? first.subarray(rel, rel + wanted) : await readAt(pack, at.offset + rel, wanted);
    if (base === undefined) return { kind: 'whole', type: kind as ObjectType, size, compressed };
    return { kind: 'delta', size, base, compressed };
  }

  /** Rebuild a packed object, inflating delta bases of at most maxBaseBytes. */
  private async readPacked(at: Located, depth: number): Promise<GitObject> {
    if (depth > MAX_DELTA_DEPTH) throw corrupt('delta chain too deep');
    const key = `${at.index.packPath}\0${at.offset}`;
    const cached = this.bases.get(key);
    if (cached) return cached;
    const entry = await this.entry(at, Infinity);
    const what = `${path.basename(at.index.packPath)} at ${at.offset}`;
    if (entry.kind === 'whole') return { type: entry.type, content: inflateExact(entry.compressed, entry.size, what) };
    const delta = inflateExact(entry.compressed, entry.size, what);
    const base = await this.readBase(entry.base, depth + 1);
    return { type: base.type, content: applyDelta(delta, base.content) };
  }

  private async readBase(base: Located | string, depth: number): Promise<GitObject> {
    if (typeof base === 'string') {
      const obj = await this.readBounded(base, this.maxBaseBytes);
      if (!obj) throw corrupt(`delta base ${base} is missing`);
      return obj;
    }
    const key = `${base.index.packPath}\0${base.offset}`;
    const cached = this.bases.get(key);
    if (cached) {
      this.bases.delete(key);
      this.bases.set(key, cached);
      return cached;
    }
    const header = await this.entry(base, 1024);
    const size = header.kind === 'whole' ? header.size : deltaResultSize(header.compressed);
    if (size > this.maxBaseBytes) {
      throw new UserError(
        'GIT_DELTA_BASE_TOO_LARGE',
        `${path.basename(base.index.packPath)}: a delta needs a base of ${size} bytes, over the limit of ${this.maxBaseBytes}`,
        { data: { bytes: size } },
      );
    }
    const obj = await this.readPacked(base, depth);
    this.remember(key, obj);
    return obj;
  }

  private async readBounded(oid: string, maxBytes: number): Promise<GitObject | undefined> {
    try {
      return await this.read(oid, maxBytes);
    } catch (err) {
      if (err instanceof ObjectTooLargeError) {
        throw new UserError(
          'GIT_DELTA_BASE_TOO_LARGE',
          `a delta needs base ${oid} of ${err.size} bytes, over the limit of ${maxBytes}`,
          { data: { oid, bytes: err.size } },
        );
      }
      throw err;
    }
  }

  private remember(key: string, obj: GitObject): void {
    if (obj.content.length > this.baseCacheBytes / 4) return;
    this.bases.set(key, obj);
    this.baseBytes += obj.content.length;
    while (this.baseBytes > this.baseCacheBytes) {
      const [oldest, value] = this.bases.entries().next().value as [string, GitObject];
      this.bases.delete(oldest);
      this.baseBytes -= value.content.length;
    }
  }
}

function checkOid(oid: string): void {
  if (!OID.test(oid)) throw new UserError('GIT_BAD_OBJECT_ID', `"${oid.slice(0, 64)}" is not a Git object id`);
}

function parseLooseHeader(head: Buffer, oid: string): ObjectHeader {
  const m = /^(commit|tree|blob|tag) (\d{1,15})$/.exec(head.toString('latin1'));
  if (!m) throw corrupt(`object ${oid}: bad loose object header`);
  return { type: m[1] as ObjectType, size: Number(m[2]) };
}

// ---- parsing commits and trees ----

/** The tree id of a commit object. */
export function commitTree(content: Buffer, oid: string): string {
  const m = /^tree ([0-9a-f]{40})\n/.exec(content.subarray(0, 46).toString('latin1'));
  if (!m) throw corrupt(`commit ${oid}: no tree line`);
  return m[1];
}

/** The object a tag points at, and that object's type. */
export function tagTarget(content: Buffer, oid: string): { object: string; type: string } {
  const m = /^object ([0-9a-f]{40})\ntype (\w+)\n/.exec(content.subarray(0, 200).toString('latin1'));
  if (!m) throw corrupt(`tag ${oid}: no object line`);
  return { object: m[1], type: m[2] };
}

export interface RawTreeEntry {
  /** Name within the tree (UTF-8). */
  path: string;
  oid: string;
  /** `040000`, `100644`, `100755`, `120000` or `160000`, as isomorphic-git names them. */
  mode: string;
  type: 'blob' | 'tree' | 'commit';
}

/** Parse a tree object: `<mode> <name>\0<20-byte id>` entries. */
export function parseTree(content: Buffer, oid: string): RawTreeEntry[] {
  const entries: RawTreeEntry[] = [];
  let i = 0;
  while (i < content.length) {
    const space = content.indexOf(0x20, i);
    const nul = space < 0 ? -1 : content.indexOf(0, space);
    if (space < 0 || nul < 0 || nul + 21 > content.length) throw corrupt(`tree ${oid}: truncated entry`);
    const rawMode = content.subarray(i, space).toString('latin1');
    const name = content.subarray(space + 1, nul).toString('utf8');
    const id = content.subarray(nul + 1, nul + 21).toString('hex');
    i = nul + 21;
    let mode: string;
    let type: RawTreeEntry['type'];
    if (rawMode === '40000' || rawMode === '040000') [mode, type] = ['040000', 'tree'];
    else if (rawMode === '160000') [mode, type] = ['160000', 'commit'];
    else if (rawMode === '120000') [mode, type] = ['120000', 'blob'];
    else if (rawMode === '100755') [mode, type] = ['100755', 'blob'];
    else if (/^100[0-7]{3}$/.test(rawMode)) [mode, type] = ['100644', 'blob'];
    else throw corrupt(`tree ${oid}: entry "${name.slice(0, 100)}" has mode ${rawMode.slice(0, 10)}`);
    entries.push({ path: name, oid: id, mode, type });
  }
  return entries;
}
