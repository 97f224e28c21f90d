/**
 * The msb SDK: filesystem compositions from their declarative JSON form
 * ({@link fsFromSpec}, as `msb mount` uses them), the pieces a sandbox is
 * prepared from (patches, scripts, volumes) and its typed errors. The
 * `Sandbox` API follows; `msb run` already boots sandboxes.
 *
 * @packageDocumentation
 */
export {
  SpecError,
  fsFromSpec,
  fsFromSpecFile,
  parseSpec,
  type DualSpec,
  type FsSpec,
  type MemFsSpec,
  type ImageSpec,
  type OverlaySpec,
  type PassthroughSpec,
} from "./spec.js";
export { SandboxError, type SandboxErrorCode } from "./errors.js";
export {
  PatchBuilder,
  SCRIPTS_DIR,
  applyPatches,
  scriptPatches,
  type AppendPatch,
  type CopyDirPatch,
  type CopyFilePatch,
  type MkdirPatch,
  type PatchFileOptions,
  type PatchOp,
  type PatchReplaceOptions,
  type RemovePatch,
  type SymlinkPatch,
  type TextPatch,
} from "./patch.js";
export {
  DISK_FSTYPES,
  VolumeBuilder,
  parseTmpfsFlag,
  parseVolumeFlag,
  volumeBackend,
  volumeSpec,
  type BackendVolumeSpec,
  type BindVolumeSpec,
  type ByteSize,
  type DiskFsType,
  type DiskVolumeSpec,
  type MemfsVolumeSpec,
  type NamedVolumeSpec,
  type TmpfsVolumeSpec,
  type VolumeBackend,
  type VolumeBackendOptions,
  type VolumeKind,
  type VolumeSpec,
} from "./volume.js";
export {
  BUILTIN_IMAGE,
  ExecStream,
  Sandbox,
  SandboxBuilder,
  imageCommand,
  mergeEnv,
  type ExecDefaults,
  type ExecOptions,
  type ExecResult,
  type ExecStreamEvent,
  type ExecStreamOptions,
  type PullPolicy,
  type SandboxHost,
  type SandboxMetrics,
  type SandboxOptions,
} from "./sandbox.js";
export { SandboxFs, type SandboxDirEntry, type SandboxStat } from "./sandbox-fs.js";
export {
  StateStore,
  processAlive,
  type CreateSandboxOptions,
  type CreateSandboxResult,
  type CreateVolumeOptions,
  type LabelFilter,
  type SandboxRecord,
  type SandboxStatus,
  type StateStoreOptions,
  type VolumeRecord,
} from "./state.js";
