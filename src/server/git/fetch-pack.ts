/**
 * A shallow fetch over smart HTTP (protocol v2 `fetch`) that stores the pack as it streams in and
 * indexes it with bounded memory. isomorphic-git's fetch collects the whole pack in memory and
 * then inflates every object in it to index it: a tenant's 512 MiB file of zeros (half a
 * megabyte on the wire) took the server past 2 GiB. Here the pack goes to disk while its SHA-1
 * is computed (refused past `maxPackBytes`), then one pass over the file learns each entry's
 * extent and id: small objects are inflated in one piece, large ones are inflated as a stream into
 * the hash and never held. Deltas are resolved afterwards from their bases (inflated again from
 * the pack, at most `maxBaseBytes` (32 MiB), with a byte-bounded cache); a delta whose base or result is
 * larger is left out of the index, so reading it later says the object is missing instead of
 * costing the server its memory. The .idx (v2) is written next to the pack, and the commits
 * the host calls shallow go to `<gitdir>/shallow` (they are the `have`s of the next fetch).
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';
import type { HttpClient } from 'isomorphic-git';
import { RetryableError, UserError } from '../../common/errors.js';
import { applyDelta, parseEntryHeader, type ObjectReader, type ObjectType } from './objects.js';

export interface FetchPackOptions {
  http: HttpClient;
  /** Repository URL (`…/group/name.git`). */
  url: string;
  /** Extra request headers (authorization). */
  headers?: Record<string, string>;
  gitdir: string;
  /** The commit to fetch (a ref tip the host just listed). */
  want: string;
  /** Reader of the store, for REF_DELTA bases the pack does not carry. */
  objects: ObjectReader;
  /** Most pack bytes accepted from the host (default 512 MiB). */
  maxPackBytes?: number;
  /** Largest delta base or delta result rebuilt while indexing (default 32 MiB). */
  maxBaseBytes?: number;
}

export interface FetchPackResult {
  /** Objects in the pack, and those left out of the index (deltas over maxBaseBytes). */
  objects: number;
  skipped: number;
  packBytes: number;
}

const TYPE_NAMES: Record<number, ObjectType> = { 1: 'commit', 2: 'tree', 3: 'blob', 4: 'tag' };
/** Objects up to this size are inflated in one piece while indexing; larger ones as a stream. */
const WHOLE_INFLATE_BYTES = 8 * 1024 * 1024;
/** Shallow commits sent as `have`s: the latest fetched ones suffice for a depth-1 cache. */
const MAX_HAVES = 16;

// ---- pkt-lines ----

function pkt(line: string): Buffer {
  const body = Buffer.from(line);
  return Buffer.concat([Buffer.from((body.length + 4).toString(16).padStart(4, '0')), body]);
}

/** Reads pkt-lines from a byte stream: a Buffer, or 'flush' / 'delim' / 'end'. */
class PktReader {
  private buf = Buffer.alloc(0);
  private done = false;
  constructor(private readonly it: AsyncIterator<Uint8Array>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.buf.length < n && !this.done) {
      const next = await this.it.next();
      if (next.done) this.done = true;
      else this.buf = this.buf.length ? Buffer.concat([this.buf, Buffer.from(next.value)]) : Buffer.from(next.value);
    }
    return this.buf.length >= n;
  }

  async read(): Promise<Buffer | 'flush' | 'delim' | 'end'> {
    if (!(await this.fill(4))) return 'end';
    const len = parseInt(this.buf.subarray(0, 4).toString('latin1'), 16);
    if (Number.isNaN(len)) throw fetchFailed('the host sent a malformed response');
    if (len === 0 || len === 1 || len === 2) {
      this.buf = this.buf.subarray(4);
      return len === 0 ? 'flush' : 'delim';
    }
    if (len < 4 || !(await this.fill(len))) throw fetchFailed('the host sent a truncated response');
    const out = this.buf.subarray(4, len);
    this.buf = this.buf.subarray(len);
    return out;
  }
}

function fetchFailed(why: string): RetryableError {
  return new RetryableError('GIT_FETCH_FAILED', `fetch failed: ${why}`);
}

/** An error shaped like isomorphic-git's HttpError, so the backend maps the status the same way. */
function httpError(statusCode: number): Error {
  return Object.assign(new Error(`HTTP Error: ${statusCode}`), { code: 'HttpError', data: { statusCode } });
}

// ---- the fetch ----

export async function fetchPack(options: FetchPackOptions): Promise<FetchPackResult> {
  const { gitdir, want } = options;
  const maxPackBytes = options.maxPackBytes ?? 512 * 1024 * 1024;
  const shallowFile = path.join(gitdir, 'shallow');
  const shallow = (await readFile(shallowFile, 'utf8').catch(() => ''))
    .split('\n')
    .filter((l) => /^[0-9a-f]{40}$/.test(l));
  const haves = shallow.slice(-MAX_HAVES).filter((oid) => oid !== want);

  const body = Buffer.concat([
    pkt('command=fetch\n'),
    pkt('agent=gitops-server\n'),
    Buffer.from('0001'),
    pkt('ofs-delta\n'),
    pkt('no-progress\n'),
    pkt('deepen 1\n'),
    ...haves.flatMap((oid) => [pkt(`shallow ${oid}\n`), pkt(`have ${oid}\n`)]),
    pkt(`want ${want}\n`),
    pkt('done\n'),
    Buffer.from('0000'),
  ]);
  const res = await options.http.request({
    url: `${options.url}/git-upload-pack`,
    method: 'POST',
    headers: {
      ...options.headers,
      'content-type': 'application/x-git-upload-pack-request',
      accept: 'application/x-git-upload-pack-result',
      'git-protocol': 'version=2',
      'user-agent': 'git/gitops-server',
    },
    body: [body] as unknown as AsyncIterableIterator<Uint8Array>,
  });
  const it = res.body?.[Symbol.asyncIterator]() as AsyncIterator<Uint8Array> | undefined;
  if (res.statusCode !== 200 || !it) {
    await drain(it);
    throw httpError(res.statusCode);
  }

  const reader = new PktReader(it);
  const newShallow = new Set(shallow);
  const tmp = path.join(gitdir, 'objects', 'pack', `tmp-${randomBytes(6).toString('hex')}.pack`);
  let received = false;
  try {
    for (;;) {
      const line = await reader.read();
      if (line === 'end' || line === 'flush') break;
      if (line === 'delim') continue;
      const text = line.toString('utf8').replace(/\n$/, '');
      if (text.startsWith('ERR ')) throw fetchFailed(`the host said: ${text.slice(4, 300)}`);
      if (text === 'shallow-info') {
        for (;;) {
          const l = await reader.read();
          if (typeof l === 'string') break;
          const [kind, oid] = l.toString('latin1').trim().split(' ');
          if (!/^[0-9a-f]{40}$/.test(oid ?? '')) continue;
          if (kind === 'shallow') newShallow.add(oid);
          else if (kind === 'unshallow') newShallow.delete(oid);
        }
        continue;
      }
      if (text === 'packfile') {
        await receivePack(reader, tmp, maxPackBytes);
        received = true;
        break;
      }
      // Sections we did not ask for (acknowledgments, wanted-refs, packfile-uris): skip to their end.
      for (;;) {
        const l = await reader.read();
        if (typeof l === 'string') break;
      }
    }
    await drain(it);
    if (!received) throw fetchFailed('the host sent no pack');
    const result = await indexPack(tmp, options.objects, options.maxBaseBytes ?? 32 * 1024 * 1024);
    const base = path.join(gitdir, 'objects', 'pack', `pack-${result.sha}`);
    await rename(tmp, `${base}.pack`);
    // The .idx last and whole (written aside, then renamed): a reader lists packs by their .idx.
    await writeFile(`${tmp}.idx`, result.idx);
    await rename(`${tmp}.idx`, `${base}.idx`);
    const kept = [...newShallow].slice(-4 * MAX_HAVES);
    await writeFile(shallowFile, kept.length ? `${kept.join('\n')}\n` : '');
    return { objects: result.count, skipped: result.skipped, packBytes: result.packBytes };
  } catch (err) {
    // Close the response too (a pack refused for its size is still streaming in).
    await drain(it);
    throw err;
  } finally {
    await rm(tmp, { force: true });
    await rm(`${tmp}.idx`, { force: true });
  }
}

async function drain(it: AsyncIterator<Uint8Array> | undefined): Promise<void> {
  if (!it) return;
  try {
    await it.return?.();
  } catch {
    // the connection is going away anyway
  }
}

/** Band 1 of the side-band stream into `file`, until the flush; band 3 is the host's error. */
async function receivePack(reader: PktReader, file: string, maxPackBytes: number): Promise<void> {
  const fh = await open(file, 'w', 0o600);
  let bytes = 0;
  try {
    for (;;) {
      const l = await reader.read();
      if (l === 'flush' || l === 'end') break;
      if (l === 'delim') continue;
      const band = l[0];
      if (band === 1) {
        bytes += l.length - 1;
        if (bytes > maxPackBytes) {
          throw new UserError(
            'GIT_PACK_TOO_LARGE',
            `the host sends a pack of more than ${Math.round(maxPackBytes / 1024 / 1024)} MiB for one commit; the project is too large for this server`,
          );
        }
        await fh.write(l.subarray(1));
      } else if (band === 3) {
        throw fetchFailed(`the host said: ${l.subarray(1, 300).toString('utf8').trim()}`);
      }
    }
  } finally {
    await fh.close();
  }
}

// ---- indexing ----

interface Entry {
  offset: number;
  end: number;
  crc: number;
  /** Pack type number (1-4 whole, 6 ofs-delta, 7 ref-delta). */
  kind: number;
  size: number;
  dataStart: number;
  baseOffset?: number;
  baseOid?: string;
  oid?: string;
  type?: ObjectType;
  skipped?: boolean;
}

async function readAt(fh: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fh.read(buf, 0, length, position);
  return buf.subarray(0, bytesRead);
}

function wrapHeader(type: ObjectType, size: number): Buffer {
  return Buffer.from(`${type} ${size}\0`);
}

/** Index a pack file: its SHA-1, the .idx v2 bytes, and how many objects were left out. */
export async function indexPack(
  packPath: string,
  objects: ObjectReader,
  maxBaseBytes: number,
): Promise<{ sha: string; idx: Buffer; count: number; skipped: number; packBytes: number }> {
  const fh = await open(packPath, 'r');
  try {
    const { size: packBytes } = await fh.stat();
    if (packBytes < 32) throw fetchFailed('the pack is truncated');
    const head = await readAt(fh, 0, 12);
    if (head.toString('latin1', 0, 4) !== 'PACK' || ![2, 3].includes(head.readUInt32BE(4)))
      throw fetchFailed('the host sent something that is not a pack');
    const count = head.readUInt32BE(8);
    const sha = await checkTrailer(fh, packBytes);
    const payloadEnd = packBytes - 20;

    const entries: Entry[] = [];
    const byOffset = new Map<number, Entry>();
    let pos = 12;
    for (let i = 0; i < count; i++) {
      const entry = await scanEntry(fh, pos, payloadEnd);
      entries.push(entry);
      byOffset.set(entry.offset, entry);
      pos = entry.end;
    }
    if (pos !== payloadEnd) throw fetchFailed(`the pack has ${payloadEnd - pos} bytes after its last object`);

    // Deltas, once every entry's extent is known: rebuild from bases, bounded.
    const byOid = new Map<string, Entry>();
    for (const e of entries) if (e.oid) byOid.set(e.oid, e);
    const bases = new BaseCache(32 * 1024 * 1024);
    const content = async (e: Entry, depth: number): Promise<{ type: ObjectType; data: Buffer }> => {
      if (depth > 4096) throw fetchFailed('a delta chain is too deep');
      const cached = bases.get(e.offset);
      if (cached) return cached;
      let out: { type: ObjectType; data: Buffer };
      if (e.kind <= 4) {
        if (e.size > maxBaseBytes) throw new BaseTooLarge();
        out = {
          type: TYPE_NAMES[e.kind],
          data: inflateAll(await readAt(fh, e.dataStart, e.end - e.dataStart), e.size),
        };
      } else {
        if (e.size > maxBaseBytes) throw new BaseTooLarge();
        const delta = inflateAll(await readAt(fh, e.dataStart, e.end - e.dataStart), e.size);
        const base = await baseOf(e, depth);
        const resultSize = deltaResultSize(delta);
        if (resultSize > maxBaseBytes) throw new BaseTooLarge();
        out = { type: base.type, data: applyDelta(delta, base.data) };
      }
      bases.set(e.offset, out);
      return out;
    };
    const baseOf = async (e: Entry, depth: number): Promise<{ type: ObjectType; data: Buffer }> => {
      if (e.baseOffset !== undefined) {
        const b = byOffset.get(e.baseOffset);
        if (!b) throw fetchFailed(`a delta at ${e.offset} names a base at ${e.baseOffset}, where no object starts`);
        return content(b, depth + 1);
      }
      const inPack = byOid.get(e.baseOid as string);
      if (inPack) return content(inPack, depth + 1);
      const stored = await objects.read(e.baseOid as string, maxBaseBytes).catch((err: unknown) => {
        if ((err as { code?: string }).code === 'GIT_OBJECT_TOO_LARGE') throw new BaseTooLarge();
        throw err;
      });
      if (!stored) throw new MissingBase();
      return { type: stored.type, data: stored.content };
    };

    // Passes until no delta resolves: a REF_DELTA may name a base that is itself a delta.
    let pending = entries.filter((e) => !e.oid);
    while (pending.length > 0) {
      const still: Entry[] = [];
      for (const e of pending) {
        try {
          const { type, data } = await content(e, 0);
          e.type = type;
          e.oid = createHash('sha1').update(wrapHeader(type, data.length)).update(data).digest('hex');
          e.skipped = false;
          byOid.set(e.oid, e);
        } catch (err) {
          if (err instanceof BaseTooLarge) e.skipped = true;
          else if (err instanceof MissingBase) still.push(e);
          else throw err;
        }
      }
      if (still.length === pending.length) {
        for (const e of still) e.skipped = true;
        break;
      }
      pending = still;
    }

    const indexed = entries.filter((e) => e.oid && !e.skipped);
    return { sha, idx: writeIndex(indexed, sha), count, skipped: count - indexed.length, packBytes };
  } finally {
    await fh.close();
  }
}

class BaseTooLarge extends Error {}
class MissingBase extends Error {}

function deltaResultSize(delta: Buffer): number {
  let i = 0;
  for (let n = 0; n < 2; n++) {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = delta[i++];
      if (byte === undefined) throw fetchFailed('a delta is truncated');
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    if (n === 1) return value;
  }
  return 0;
}

function inflateAll(compressed: Buffer, size: number): Buffer {
  let out: Buffer;
  try {
    out = zlib.inflateSync(compressed, { maxOutputLength: Math.max(size, 1) });
  } catch (err) {
    throw fetchFailed(`bad zlib data in the pack: ${(err as Error).message}`);
  }
  if (out.length !== size) throw fetchFailed('an object in the pack does not have its announced size');
  return out;
}

/** The pack's SHA-1 over everything but the trailer, which must repeat it. */
async function checkTrailer(fh: FileHandle, packBytes: number): Promise<string> {
  const hash = createHash('sha1');
  const chunk = Buffer.alloc(1024 * 1024);
  for (let pos = 0; pos < packBytes - 20;) {
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, packBytes - 20 - pos), pos);
    if (bytesRead === 0) break;
    hash.update(chunk.subarray(0, bytesRead));
    pos += bytesRead;
  }
  const sha = hash.digest('hex');
  if ((await readAt(fh, packBytes - 20, 20)).toString('hex') !== sha)
    throw fetchFailed('the pack does not match its checksum');
  return sha;
}

/** One entry's extent, CRC, and (for a whole object) its id. */
async function scanEntry(fh: FileHandle, offset: number, payloadEnd: number): Promise<Entry> {
  const head = await readAt(fh, offset, Math.min(32, payloadEnd - offset));
  const { type: kind, size, used } = parseEntryHeader(head);
  let dataStart = offset + used;
  const entry: Entry = { offset, end: 0, crc: 0, kind, size, dataStart };
  if (kind === 6) {
    let i = used;
    let byte = head[i++];
    let distance = byte & 0x7f;
    while (byte & 0x80) {
      byte = head[i++];
      if (byte === undefined) throw fetchFailed('a delta offset is truncated');
      distance = (distance + 1) * 128 + (byte & 0x7f);
    }
    entry.baseOffset = offset - distance;
    dataStart = offset + i;
  } else if (kind === 7) {
    entry.baseOid = head.subarray(used, used + 20).toString('hex');
    dataStart = offset + used + 20;
  } else if (!TYPE_NAMES[kind]) {
    throw fetchFailed(`an object at ${offset} has type ${kind}`);
  }
  entry.dataStart = dataStart;
  const type = TYPE_NAMES[kind];
  // Deflate grows incompressible data by 5 bytes per 16 KiB block at worst, plus its header.
  const bound = Math.min(payloadEnd - dataStart, size + 64 + Math.ceil(size / 16_000) * 5);
  if (size <= WHOLE_INFLATE_BYTES) {
    const window = await readAt(fh, dataStart, bound);
    let data: Buffer;
    let consumed: number;
    try {
      const r = zlib.inflateSync(window, { info: true, maxOutputLength: Math.max(size, 1) }) as unknown as {
        buffer: Buffer;
        engine: { bytesWritten: number };
      };
      data = r.buffer;
      consumed = r.engine.bytesWritten;
    } catch (err) {
      throw fetchFailed(`bad zlib data at ${offset}: ${(err as Error).message}`);
    }
    if (data.length !== size) throw fetchFailed(`the object at ${offset} does not have its announced size`);
    entry.end = dataStart + consumed;
    entry.crc = zlib.crc32(window.subarray(0, consumed), zlib.crc32(head.subarray(0, dataStart - offset)));
    if (type) entry.oid = createHash('sha1').update(wrapHeader(type, size)).update(data).digest('hex');
    return entry;
  }
  // Large: inflate as a stream into the hash (a delta this large is only measured, then left out).
  const hash = createHash('sha1');
  if (type) hash.update(wrapHeader(type, size));
  const consumed = await streamInflate(fh, dataStart, payloadEnd, size, (chunk) => {
    if (type) hash.update(chunk);
  });
  entry.end = dataStart + consumed;
  let crc = zlib.crc32(head.subarray(0, dataStart - offset));
  const chunk = Buffer.alloc(1024 * 1024);
  for (let pos = dataStart; pos < entry.end;) {
    const { bytesRead } = await fh.read(chunk, 0, Math.min(chunk.length, entry.end - pos), pos);
    if (bytesRead === 0) break;
    crc = zlib.crc32(chunk.subarray(0, bytesRead), crc);
    pos += bytesRead;
  }
  entry.crc = crc;
  if (type) entry.oid = hash.digest('hex');
  else entry.skipped = true;
  return entry;
}

/** Inflate the zlib stream at `start` chunk by chunk; resolves to the compressed bytes it spans. */
function streamInflate(
  fh: FileHandle,
  start: number,
  limit: number,
  size: number,
  onData: (chunk: Buffer) => void,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const inflate = zlib.createInflate();
    let produced = 0;
    let fed = start;
    let finished = false;
    inflate.on('data', (chunk: Buffer) => {
      produced += chunk.length;
      if (produced > size) {
        finished = true;
        inflate.destroy();
        reject(fetchFailed(`the object at ${start} inflates past its announced size`));
        return;
      }
      onData(chunk);
    });
    inflate.on('error', (err) => {
      if (finished) return;
      finished = true;
      reject(fetchFailed(`bad zlib data at ${start}: ${err.message}`));
    });
    inflate.on('end', () => {
      if (finished) return;
      finished = true;
      if (produced !== size) reject(fetchFailed(`the object at ${start} does not have its announced size`));
      else resolve(inflate.bytesWritten);
    });
    const pump = async (): Promise<void> => {
      const buf = Buffer.alloc(256 * 1024);
      while (!finished && fed < limit) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, limit - fed), fed);
        if (bytesRead === 0) break;
        fed += bytesRead;
        // Copy: the inflater may still hold the chunk when the buffer is reused.
        const ok = inflate.write(Buffer.from(buf.subarray(0, bytesRead)));
        if (!ok && !finished) await new Promise<void>((r) => inflate.once('drain', () => r()));
      }
      if (!finished) inflate.end();
    };
    pump().catch((err: unknown) => {
      if (finished) return;
      finished = true;
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
}

/** Pack .idx version 2 for the entries (fanout, sorted ids, CRCs, offsets, 64-bit offsets, checksums). */
export function writeIndex(entries: readonly { oid?: string; crc: number; offset: number }[], packSha: string): Buffer {
  const sorted = [...entries].sort((a, b) => ((a.oid as string) < (b.oid as string) ? -1 : 1));
  const n = sorted.length;
  const large = sorted.filter((e) => e.offset >= 0x80000000);
  const buf = Buffer.alloc(8 + 1024 + n * 28 + large.length * 8 + 40);
  buf.writeUInt32BE(0xff744f63, 0);
  buf.writeUInt32BE(2, 4);
  const fanout = new Array<number>(256).fill(0);
  for (const e of sorted) fanout[parseInt((e.oid as string).slice(0, 2), 16)]++;
  let running = 0;
  for (let i = 0; i < 256; i++) {
    running += fanout[i];
    buf.writeUInt32BE(running, 8 + i * 4);
  }
  const names = 8 + 1024;
  const crcs = names + n * 20;
  const offsets = crcs + n * 4;
  const table = offsets + n * 4;
  let li = 0;
  sorted.forEach((e, i) => {
    buf.write(e.oid as string, names + i * 20, 'hex');
    buf.writeUInt32BE(e.crc >>> 0, crcs + i * 4);
    if (e.offset < 0x80000000) {
      buf.writeUInt32BE(e.offset, offsets + i * 4);
    } else {
      buf.writeUInt32BE((0x80000000 | li) >>> 0, offsets + i * 4);
      buf.writeBigUInt64BE(BigInt(e.offset), table + li * 8);
      li++;
    }
  });
  const trailer = table + large.length * 8;
  buf.write(packSha, trailer, 'hex');
  createHash('sha1')
    .update(buf.subarray(0, trailer + 20))
    .digest()
    .copy(buf, trailer + 20);
  return buf;
}

/** Inflated delta bases by pack offset, bounded by bytes. */
class BaseCache {
  private readonly map = new Map<number, { type: ObjectType; data: Buffer }>();
  private bytes = 0;
  constructor(private readonly max: number) {}
  get(offset: number): { type: ObjectType; data: Buffer } | undefined {
    return this.map.get(offset);
  }
  set(offset: number, value: { type: ObjectType; data: Buffer }): void {
    if (value.data.length > this.max / 4 || this.map.has(offset)) return;
    this.map.set(offset, value);
    this.bytes += value.data.length;
    while (this.bytes > this.max) {
      const [k, v] = this.map.entries().next().value as [number, { type: ObjectType; data: Buffer }];
      this.map.delete(k);
      this.bytes -= v.data.length;
    }
  }
}
