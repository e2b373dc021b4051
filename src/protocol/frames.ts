/**
 * The one WebSocket frame decoder of both sides (server hub.ts, agent session.ts): a frame is a
 * text frame holding one JSON message of the peer's set (messages.ts), or it closes the session.
 * What a side does next (close code, log line, metric) is its own business.
 */
import type { RawData } from 'ws';
import type { DecodeResult } from './messages.js';

/** Why a frame is refused: `binary` (not part of the protocol) or `invalid` (not a known message). */
export type FrameResult<T> = { ok: true; message: T } | { ok: false; kind: 'binary' | 'invalid'; error: string };

/** The reason sent with the close of a binary frame. */
export const BINARY_FRAME_REASON = 'binary frames are not part of the protocol';

/**
 * Decodes one frame with the peer's message decoder. ws hands over a Buffer (binaryType
 * nodebuffer), decoded in place rather than copied first: a message may be up to MAX_MESSAGE_BYTES.
 */
export function decodeFrame<T>(
  data: RawData,
  isBinary: boolean,
  decode: (text: string) => DecodeResult<T>,
): FrameResult<T> {
  if (isBinary) return { ok: false, kind: 'binary', error: BINARY_FRAME_REASON };
  const text = (Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)).toString(
    'utf8',
  );
  const decoded = decode(text);
  return decoded.ok ? { ok: true, message: decoded.message } : { ok: false, kind: 'invalid', error: decoded.error };
}
