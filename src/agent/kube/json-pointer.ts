/** JSON pointer segments (RFC 6901), as Kubernetes JSON patches and managedFields paths use them. */

/** Unescapes one JSON-pointer segment (RFC 6901). */
export function unescapePointerSegment(s: string): string {
  return s.indexOf('~') < 0 ? s : s.replace(/~1/g, '/').replace(/~0/g, '~');
}

/** Escapes one JSON-pointer segment (RFC 6901): `~` → `~0`, `/` → `~1`. */
export function escapePointerSegment(s: string): string {
  return s.indexOf('~') < 0 && s.indexOf('/') < 0 ? s : s.replace(/~/g, '~0').replace(/\//g, '~1');
}
