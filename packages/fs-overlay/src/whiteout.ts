// OCI image-spec whiteouts (layer.md): `.wh.<name>` hides `<name>` of the
// layers below; `.wh..wh..opq` in a directory hides everything below it.
import { NAME_MAX, bytesStartWith, toBytes } from "@msb/fs";

/** The prefix of every whiteout name. */
export const WHITEOUT_PREFIX = toBytes(".wh.");
/** The opaque-directory marker. */
export const OPAQUE_MARKER = toBytes(".wh..wh..opq");

/** True for any name in the whiteout namespace (`.wh.` prefix), the opaque marker included. */
export const isWhiteoutName = (name: Uint8Array): boolean => bytesStartWith(name, WHITEOUT_PREFIX);

/** The whiteout of `name`, or `undefined` when it would be longer than a name may be. */
export function whiteoutOf(name: Uint8Array): Uint8Array | undefined {
  if (name.length + WHITEOUT_PREFIX.length > NAME_MAX) return undefined;
  const out = new Uint8Array(WHITEOUT_PREFIX.length + name.length);
  out.set(WHITEOUT_PREFIX);
  out.set(name, WHITEOUT_PREFIX.length);
  return out;
}

/** A Map key for a name: one char per byte, so any bytes round-trip. */
export function nameKey(name: Uint8Array): string {
  let key = "";
  for (let i = 0; i < name.length; i += 4096) key += String.fromCharCode(...name.subarray(i, i + 4096));
  return key;
}
