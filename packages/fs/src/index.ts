/**
 * The filesystem contract of msb: {@link DynFileSystem}, its types and errors,
 * the {@link FsBackend} base class, {@link withHooks}, and the path-level
 * {@link PathFs} client. Zero runtime dependencies.
 *
 * @packageDocumentation
 */
export type {
  Attr,
  CachePolicy,
  Context,
  CreateReply,
  DirEntry,
  DirEntryPlus,
  DynFileSystem,
  Entry,
  FsOperation,
  MaybePromise,
  OpenReply,
  SetattrRequest,
  StatFs,
  Timespec,
} from "./types.js";
export {
  ACCESS,
  DT,
  FALLOC,
  FOPEN,
  NAME_MAX,
  O,
  PATH_MAX,
  RENAME,
  ROOT_INO,
  S,
  SEEK,
  SetattrValid,
  WRITE,
  XATTR,
  XATTR_NAME_MAX,
  XATTR_SIZE_MAX,
} from "./constants.js";
export {
  ERRNO_ALIASES,
  ERRNO_TABLE,
  Errno,
  FsError,
  canonicalErrnoName,
  errnoMessage,
  errnoName,
  fsError,
  type ErrnoName,
  type FsErrorDetails,
} from "./errno.js";
export { FsBackend } from "./backend.js";
export { withHooks, type DataHookInfo, type DataHooks } from "./hooks.js";
export { checkAccess, hasAccess, inGroup, openAccess, stickyAllows } from "./access.js";
export { dtFromMode, fileKind, isDirectory, isRegularFile, isSymlink, major, makedev, minor, type FileKind } from "./mode.js";
export {
  bytesEqual,
  bytesStartWith,
  bytesToString,
  isDotOrDotDot,
  joinPath,
  splitPath,
  toBytes,
  validateEntryName,
  validateName,
} from "./names.js";
export { isPromiseLike, mapMaybe } from "./maybe.js";
export { nowTimespec, setattrRequest, toTimespec, type SetattrChanges } from "./setattr.js";
export {
  PathFs,
  type PathDirent,
  type PathFsOptions,
  type PathLike,
  type WalkEntry,
  type WriteFileOptions,
} from "./path-fs.js";
export {
  checkXattrAccess,
  checkXattrValue,
  modeAfterWrite,
  newInodeOwnership,
  planSetattr,
  xattrNamespace,
  xattrVisible,
  type SetattrPlan,
  type SetattrPlanOptions,
  type XattrNamespace,
} from "./policy.js";
export { parseBytes } from "./units.js";
export {
  OVERRIDE_STAT_SIZE,
  OVERRIDE_STAT_VERSION,
  OVERRIDE_STAT_XATTR,
  OverrideStatError,
  decodeOverrideStat,
  encodeOverrideStat,
  typeFitsHost,
  type OverrideStat,
} from "./override-stat.js";
export { checkCount, isCount, isTimespec, isU32 } from "./args.js";
export {
  OPAQUE_MARKER,
  ROOT_CONTEXT,
  WHITEOUT_PREFIX,
  copyObject,
  copyRangeAcross,
  discardCopy,
  ensureMarker,
  hasEntry,
  isNoEntry,
  isWhiteoutName,
  listEntries,
  lookupIfExists,
  nameKey,
  resolveCachePolicy,
  resolveStagingName,
  whiteoutOf,
  type CopyTarget,
  type OpenFileRef,
} from "./union.js";
export { CompositeFs, CompositeNode, type BackendObject, type CompositeFile, type CompositeNames, type MergedName } from "./composite.js";
