/**
 * @msb/vmm: QEMU microVMs for msb. Boots `-M microvm` on msb's guest kernel
 * and initramfs (built from Debian packages by `scripts/setup.sh`), whose PID 1
 * is the msb agent; serves the guest's filesystems from any `DynFileSystem`
 * over FUSE, and runs commands and file transfers over the agent protocol
 * (PROTOCOL.md).
 *
 * @packageDocumentation
 */
export { findGuestAssets, type FindGuestAssetsOptions, type GuestAssets } from "./assets.js";
export { VmmError, type SpawnFailureKind, type VmmErrorCode } from "./errors.js";
export { detectAccelerator, type Accelerator, type AcceleratorChoice, type AcceleratorProbeOptions } from "./accel.js";
export {
  AgentClient,
  ExecProcess,
  MAX_STREAMS,
  PROTOCOL_VERSIONS,
  STREAM_WINDOW,
  type AgentConnectOptions,
  type ExecEvent,
  type ExecExit,
  type ExecOutput,
  type ExecRequest,
  type GuestDirEntry,
  type GuestFileType,
  type GuestStat,
  type Rlimit,
  type SetupMount,
  type SetupRequest,
  type WireString,
} from "./agent.js";
export { CborError, decodeCbor, encodeCbor, cborDiagnostic, isCborMap, type CborMap, type CborValue } from "./cbor.js";
export { FLAG_CANCEL, FLAG_END, FrameError, FrameReader, MAX_BODY, MAX_CHUNK, decodeFrame, encodeFrame, type Frame } from "./frame.js";
export { MicroVm, type BootTimings, type MicroVmOptions, type VmDisk, type VmMount } from "./vm.js";
export { qemuArgs, type QemuConfig, type QemuDisk, type QemuExit, type SerialPort } from "./qemu.js";
export { defaultStateDir, savedStatePath, type SavedState, type SavedStateKey } from "./snapshot.js";
export { processExists } from "./run-dir.js";
