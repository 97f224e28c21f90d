/**
 * A FUSE server for any msb `DynFileSystem` of `@msb/fs`: it decodes the
 * kernel's FUSE requests and encodes the replies ({@link FuseServer}), and
 * carries them over the host's `/dev/fuse` ({@link mountFuse}) or a guest's
 * byte stream ({@link serveStream}).
 *
 * @packageDocumentation
 */
export { FuseServer, type BackingFiles, type FuseConnectionInfo, type FuseServerOptions, type ReplySink } from "./server.js";
export { mountFuse, type FuseMount, type FuseMountOptions, type UnmountOptions } from "./mount.js";
export { serveStream, type FuseStream, type StreamServeOptions } from "./stream.js";
export { FuseError, type FuseErrorCode } from "./errors.js";
export { consoleLogger, type FuseLogger } from "./log.js";
export { FUSE_MAJOR, FUSE_MINOR, FUSE_MIN_MINOR, maxRequestSize } from "./protocol.js";
