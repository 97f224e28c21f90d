/**
 * PassthroughFs: a host directory served to an untrusted guest as a
 * `DynFileSystem` (`@msb/fs`), confined with `openat2`, with the guest's
 * ownership, modes and special files kept in the `user.msb.override_stat`
 * xattr so it runs unprivileged.
 *
 * @packageDocumentation
 */
export { PassthroughFs } from "./passthrough.js";
export type { PassthroughFsOptions } from "./options.js";
