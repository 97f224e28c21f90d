// Where guest xattrs live on the host. Only the host's user.* namespace is
// used, so the backend needs no privilege and a guest can never set a host
// trusted.* or security.* xattr (overlayfs metadata, file capabilities, LSM
// labels) on a host file:
//
//   guest user.NAME      <-> host user.NAME            (NAME not starting "msb.")
//   guest trusted.NAME   <-> host user.msb.trusted.NAME
//   guest security.NAME  <-> host user.msb.security.NAME
//   guest user.msb.*          reserved: absent to the guest, never settable
//   host user.msb.* (others), trusted.*, security.*, system.*: invisible
import { bytesStartWith as startsWith, toBytes, type XattrNamespace } from "@msb/fs";

const USER = toBytes("user.");
const RESERVED = toBytes("user.msb.");
const MAPPED: readonly (readonly [Uint8Array, Uint8Array])[] = [
  [toBytes("trusted."), toBytes("user.msb.trusted.")],
  [toBytes("security."), toBytes("user.msb.security.")],
];

function swapPrefix(name: Uint8Array, from: Uint8Array, to: Uint8Array): Uint8Array {
  const out = new Uint8Array(to.length + name.length - from.length);
  out.set(to);
  out.set(name.subarray(from.length), to.length);
  return out;
}

/**
 * The host name of guest xattr `name` in namespace `ns` (already checked by
 * `xattrNamespace`), or `undefined` for a name the guest may not use: one in
 * the reserved `user.msb.` prefix (which holds `user.msb.override_stat`).
 */
export function hostXattrName(name: Uint8Array, ns: XattrNamespace): Uint8Array | undefined {
  if (ns === "user") return startsWith(name, RESERVED) ? undefined : name;
  for (const [guest, host] of MAPPED) if (startsWith(name, guest)) return swapPrefix(name, guest, host);
  return undefined;
}

/** The guest name of host xattr `name`, or `undefined` when the guest must not see it. */
export function guestXattrName(name: Uint8Array): Uint8Array | undefined {
  if (!startsWith(name, RESERVED)) return startsWith(name, USER) ? name : undefined;
  for (const [guest, host] of MAPPED) if (startsWith(name, host) && name.length > host.length) return swapPrefix(name, host, guest);
  return undefined;
}
