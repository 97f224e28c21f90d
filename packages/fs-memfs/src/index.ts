/**
 * MemFs: an in-memory `DynFileSystem` of `@msb/fs` with Linux (tmpfs)
 * semantics, sparse files, and limits on capacity, inodes and file size.
 *
 * @packageDocumentation
 */
export { MemFs } from "./memfs.js";
export type { MemFsOptions } from "./options.js";
