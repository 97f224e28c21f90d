// Volumes: what a sandbox mounts besides its root, as typed specs (from the
// builder or the CLI's Docker-like flags), and the host-side backend each one
// is served by.
import { mkdir, stat } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import {
  FsBackend,
  FsError,
  O,
  ACCESS,
  parseBytes,
  withHooks,
  type Attr,
  type Context,
  type CreateReply,
  type DataHooks,
  type DynFileSystem,
  type Entry,
  type MaybePromise,
  type OpenReply,
} from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { SandboxError } from "./errors.js";
import { checkGuestPath, errnoOf, inputOf } from "./patch.js";

/** Filesystem types a disk-image volume may hold (the guest kernel mounts it). */
export const DISK_FSTYPES = ["ext4", "vfat"] as const;

/** A filesystem type of {@link DISK_FSTYPES}. */
export type DiskFsType = (typeof DISK_FSTYPES)[number];

/** Fields every volume has. */
interface VolumeCommon {
  /** Absolute, normalized guest path the volume is mounted at; never `/`. */
  readonly guestPath: string;
  /** Mounted read-only: every change answers `EROFS`. */
  readonly readonly: boolean;
}

/** A volume msb keeps under `<home>/volumes/<name>`, created on first use and kept. */
export interface NamedVolumeSpec extends VolumeCommon {
  readonly kind: "named";
  readonly name: string;
  /** Bytes the volume may hold (`ENOSPC` beyond); `undefined` for no limit. */
  readonly quota: number | undefined;
  readonly hooks: DataHooks | undefined;
}

/** A host directory, which must exist. */
export interface BindVolumeSpec extends VolumeCommon {
  readonly kind: "bind";
  /** Absolute host path. */
  readonly hostPath: string;
  /** Bytes the tree may hold (`ENOSPC` beyond); `undefined` for no limit. */
  readonly quota: number | undefined;
  readonly hooks: DataHooks | undefined;
}

/** A tmpfs the guest kernel mounts itself. */
export interface TmpfsVolumeSpec extends VolumeCommon {
  readonly kind: "tmpfs";
  /** Bytes; `undefined` for the guest kernel's default (half its memory). */
  readonly size: number | undefined;
}

/** An in-memory filesystem on the host (`MemFs`), gone when the sandbox stops. */
export interface MemfsVolumeSpec extends VolumeCommon {
  readonly kind: "memfs";
  /** Bytes; `undefined` for no limit but the host's memory. */
  readonly capacity: number | undefined;
}

/** A disk image the VM attaches as a block device and the guest mounts. */
export interface DiskVolumeSpec extends VolumeCommon {
  readonly kind: "disk";
  /** Absolute host path of the image. */
  readonly imagePath: string;
  readonly fstype: DiskFsType;
}

/** Any `DynFileSystem` the caller made. */
export interface BackendVolumeSpec extends VolumeCommon {
  readonly kind: "backend";
  readonly fs: DynFileSystem;
}

/** One volume of a sandbox, by kind. */
export type VolumeSpec = NamedVolumeSpec | BindVolumeSpec | TmpfsVolumeSpec | MemfsVolumeSpec | DiskVolumeSpec | BackendVolumeSpec;

/** The kinds of {@link VolumeSpec}. */
export type VolumeKind = VolumeSpec["kind"];

/** A byte count as a number or a string such as `"64MiB"` (binary units). */
export type ByteSize = number | string;

const NAMED_VOLUME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

function invalid(input: string, message: string): never {
  throw new SandboxError("ERR_MSB_INVALID_CONFIG", input, message);
}

function volumeError(input: string, message: string, cause?: unknown): never {
  throw new SandboxError("ERR_MSB_VOLUME", input, message, { cause, errno: errnoOf(cause) });
}

/** `size` as whole bytes: a non-negative safe integer, or a string {@link parseBytes} of `@msb/fs` reads. */
function checkBytes(size: unknown, what: string): number {
  const bytes = typeof size === "string" ? parseBytes(size) : size;
  if (typeof bytes === "number" && Number.isSafeInteger(bytes) && bytes >= 0) return bytes;
  return invalid(inputOf(size), `${what} must be a byte count such as 67108864 or "64MiB"`);
}

function checkHostPath(path: unknown, what: string): string {
  if (typeof path !== "string" || path === "" || path.includes("\0")) return invalid(inputOf(path), `${what} must be a non-empty path without NUL`);
  // Resolved now, so a later change of the working directory does not change what is mounted.
  return resolve(path);
}

/** Checks a named volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}`. */
function checkVolumeName(name: unknown): string {
  if (typeof name === "string" && NAMED_VOLUME.test(name)) return name;
  return invalid(inputOf(name), "a volume name must match [a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}");
}

type KindFields =
  | Omit<NamedVolumeSpec, keyof VolumeCommon | "quota" | "hooks">
  | Omit<BindVolumeSpec, keyof VolumeCommon | "quota" | "hooks">
  | Omit<TmpfsVolumeSpec, keyof VolumeCommon>
  | Omit<MemfsVolumeSpec, keyof VolumeCommon>
  | Omit<DiskVolumeSpec, keyof VolumeCommon>
  | Omit<BackendVolumeSpec, keyof VolumeCommon>;

/**
 * Describes one volume at `guestPath`: exactly one kind (`named`, `bind`,
 * `tmpfs`, `memfs`, `disk`, `backend`), then optionally `readonly()`,
 * `quota()` (named and bind) and data hooks (named and bind). Arguments are
 * checked as given and the combination by {@link VolumeBuilder.build}, all
 * with `ERR_MSB_INVALID_CONFIG`.
 *
 * @example
 * ```ts
 * const spec = new VolumeBuilder("/data").named("cache").quota("1GiB").build();
 * // { kind: "named", guestPath: "/data", name: "cache", quota: 1073741824, readonly: false, hooks: undefined }
 * ```
 */
export class VolumeBuilder {
  readonly #guestPath: string;
  #kind: KindFields | undefined;
  #readonly = false;
  #quota: number | undefined;
  #hooks: { onRead?: DataHooks["onRead"]; onWrite?: DataHooks["onWrite"] } = {};

  constructor(guestPath: string) {
    this.#guestPath = checkGuestPath(guestPath, "ERR_MSB_INVALID_CONFIG", "volume guest path");
  }

  /** A volume msb keeps under `<home>/volumes/<name>`, created on first use. */
  named(name: string): this {
    return this.#set({ kind: "named", name: checkVolumeName(name) });
  }

  /** The existing host directory `hostDir`. */
  bind(hostDir: string): this {
    return this.#set({ kind: "bind", hostPath: checkHostPath(hostDir, "a bind volume's host directory") });
  }

  /** A tmpfs of `size` bytes (the guest's default when omitted), mounted by the guest kernel. */
  tmpfs(size?: ByteSize): this {
    return this.#set({ kind: "tmpfs", size: size === undefined ? undefined : checkBytes(size, "a tmpfs size") });
  }

  /** An in-memory filesystem on the host of `capacity` bytes (unlimited when omitted). */
  memfs(capacity?: ByteSize): this {
    return this.#set({ kind: "memfs", capacity: capacity === undefined ? undefined : checkBytes(capacity, "a memfs capacity") });
  }

  /** The disk image `imagePath`, holding a filesystem of type `fstype`, attached by the VM. */
  disk(imagePath: string, fstype: DiskFsType): this {
    if (!(DISK_FSTYPES as readonly unknown[]).includes(fstype)) invalid(inputOf(fstype), `a disk fstype must be one of ${DISK_FSTYPES.join(", ")}`);
    return this.#set({ kind: "disk", imagePath: checkHostPath(imagePath, "a disk image path"), fstype });
  }

  /** A filesystem the caller made; the caller keeps owning it. */
  backend(fs: DynFileSystem): this {
    if (typeof fs !== "object" || fs === null || typeof (fs as Partial<DynFileSystem>).lookup !== "function") {
      invalid(this.#guestPath, "a backend volume needs a DynFileSystem");
    }
    return this.#set({ kind: "backend", fs });
  }

  /** Mount read-only. */
  readonly(): this {
    this.#readonly = true;
    return this;
  }

  /** Limit a named or bind volume to `bytes` of host space (`ENOSPC` beyond). */
  quota(bytes: ByteSize): this {
    this.#quota = checkBytes(bytes, "a volume quota");
    return this;
  }

  /** Transform data read from a named or bind volume before the guest sees it (see `withHooks` of `@msb/fs`). */
  onRead(hook: NonNullable<DataHooks["onRead"]>): this {
    if (typeof hook !== "function") invalid(this.#guestPath, "onRead must be a function");
    this.#hooks = { ...this.#hooks, onRead: hook };
    return this;
  }

  /** Transform data the guest writes to a named or bind volume before the host stores it. */
  onWrite(hook: NonNullable<DataHooks["onWrite"]>): this {
    if (typeof hook !== "function") invalid(this.#guestPath, "onWrite must be a function");
    this.#hooks = { ...this.#hooks, onWrite: hook };
    return this;
  }

  /** The checked spec. */
  build(): VolumeSpec {
    const kind = this.#kind;
    const guestPath = this.#guestPath;
    if (kind === undefined) return invalid(guestPath, "a volume needs a kind: named, bind, tmpfs, memfs, disk or backend");
    const hooks = this.#hooks.onRead === undefined && this.#hooks.onWrite === undefined ? undefined : Object.freeze({ ...this.#hooks });
    if (kind.kind !== "named" && kind.kind !== "bind") {
      if (this.#quota !== undefined) invalid(guestPath, `a ${kind.kind} volume takes no quota (only named and bind volumes do; size a tmpfs or memfs instead)`);
      if (hooks !== undefined) invalid(guestPath, `a ${kind.kind} volume takes no data hooks (only named and bind volumes do)`);
    }
    if (this.#readonly && (kind.kind === "tmpfs" || kind.kind === "memfs")) {
      invalid(guestPath, `a read-only ${kind.kind} volume would stay empty`);
    }
    if (this.#readonly && this.#quota !== undefined) invalid(guestPath, "a read-only volume takes no quota: nothing can be written to it");
    const common = { guestPath, readonly: this.#readonly };
    const spec: VolumeSpec =
      kind.kind === "named" || kind.kind === "bind" ? { ...kind, ...common, quota: this.#quota, hooks } : { ...kind, ...common };
    return Object.freeze(spec);
  }

  #set(kind: KindFields): this {
    if (this.#kind !== undefined) invalid(this.#guestPath, `a volume has exactly one kind; it is already ${this.#kind.kind}, not also ${kind.kind}`);
    this.#kind = kind;
    return this;
  }
}

/**
 * The builder spelling: `volumeSpec("/data", v => v.named("cache").readonly())`.
 *
 * @example
 * ```ts
 * const spec = volumeSpec("/scratch", (v) => v.tmpfs("256MiB"));
 * ```
 */
export function volumeSpec(guestPath: string, configure: (volume: VolumeBuilder) => VolumeBuilder): VolumeSpec {
  return configure(new VolumeBuilder(guestPath)).build();
}

/**
 * Parses the CLI's `-v` flag, Docker style: `NAME:/guest[:ro|rw]` for a
 * named volume, `/host:/guest[:ro|rw]` for a bind mount (a source starting
 * with `/`, `./` or `../` is a host path). `ERR_MSB_INVALID_CONFIG`, input the
 * flag, for anything else.
 *
 * @example
 * ```ts
 * parseVolumeFlag("cache:/root/.cache");   // named volume "cache"
 * parseVolumeFlag("/srv/data:/data:ro");   // read-only bind mount
 * ```
 */
export function parseVolumeFlag(flag: string): VolumeSpec {
  if (typeof flag !== "string") return invalid(inputOf(flag), "a volume flag must be a string");
  const parts = flag.split(":");
  const [source, guestPath, access] = parts;
  if (parts.length < 2 || parts.length > 3 || source === "" || guestPath === undefined || source === undefined) {
    return invalid(flag, "a volume flag is NAME:/guest/path or /host/path:/guest/path, optionally followed by :ro or :rw");
  }
  if (access !== undefined && access !== "ro" && access !== "rw") return invalid(flag, `a volume flag's access must be ro or rw, got ${JSON.stringify(access)}`);
  return rethrowWithInput(flag, () => {
    const builder = new VolumeBuilder(guestPath);
    const isHostPath = isAbsolute(source) || source.startsWith("./") || source.startsWith("../") || source === "." || source === "..";
    if (isHostPath) builder.bind(source);
    else builder.named(source);
    if (access === "ro") builder.readonly();
    return builder.build();
  });
}

/**
 * Parses the CLI's `--tmpfs` flag: `/guest/path` or `/guest/path:SIZE`
 * (`SIZE` as `64MiB`, `64m` or `size=64m`).
 *
 * @example
 * ```ts
 * parseTmpfsFlag("/tmp:512MiB"); // { kind: "tmpfs", guestPath: "/tmp", size: 536870912, readonly: false }
 * ```
 */
export function parseTmpfsFlag(flag: string): TmpfsVolumeSpec {
  if (typeof flag !== "string") return invalid(inputOf(flag), "a tmpfs flag must be a string");
  const colon = flag.indexOf(":");
  const guestPath = colon === -1 ? flag : flag.slice(0, colon);
  const size = colon === -1 ? undefined : flag.slice(colon + 1).replace(/^size=/, "");
  return rethrowWithInput(flag, () => {
    const builder = new VolumeBuilder(guestPath);
    builder.tmpfs(size);
    return builder.build() as TmpfsVolumeSpec;
  });
}

/** Runs `parse`; a config error it throws is rethrown naming the whole flag as input, the original attached. */
function rethrowWithInput<T>(flag: string, parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (SandboxError.isInstance(error) && error.code === "ERR_MSB_INVALID_CONFIG") {
      throw new SandboxError("ERR_MSB_INVALID_CONFIG", flag, error.message, { cause: error });
    }
    throw error;
  }
}

/** What serves a volume on the host; see {@link volumeBackend}. */
export interface VolumeBackend {
  /** The filesystem to serve over FUSE; `undefined` for tmpfs and disk volumes, which the guest or the VM provide. */
  readonly fs: DynFileSystem | undefined;
  /** For a tmpfs volume: what the guest mounts. */
  readonly tmpfs?: { readonly target: string; readonly size: number | undefined };
  /** Releases what was opened for the volume (host fds); a named volume's data is kept. */
  cleanup(): Promise<void>;
}

/** Options of {@link volumeBackend}. */
export interface VolumeBackendOptions {
  /** The msb home (`~/.msb` or `MSB_HOME`); named volumes live in `<home>/volumes/<name>`. */
  readonly home: string;
}

/**
 * Makes the host side of a volume: a `PassthroughFs` of `@msb/fs-passthrough`
 * over `<home>/volumes/NAME` (created with mode `0o700` on first use) or
 * over a bind directory (which must exist), with quota, read-only and hooks
 * applied; a `MemFs` of `@msb/fs-memfs`; or the given backend (wrapped
 * read-only when asked). A tmpfs volume yields what the guest mounts; a disk
 * volume is only checked (the image must be a file), since the VM attaches
 * it. Failures are `ERR_MSB_VOLUME`.
 *
 * @example
 * ```ts
 * const { fs, cleanup } = await volumeBackend(parseVolumeFlag("cache:/root/.cache"), { home: "/home/me/.msb" });
 * try {
 *   // serve fs over FUSE
 * } finally {
 *   await cleanup();
 * }
 * ```
 */
export async function volumeBackend(spec: VolumeSpec, options: VolumeBackendOptions): Promise<VolumeBackend> {
  switch (spec.kind) {
    case "named": {
      const dir = join(options.home, "volumes", spec.name);
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
      } catch (error) {
        volumeError(spec.name, `cannot create the named volume's directory ${dir}`, error);
      }
      return passthroughVolume(dir, spec, spec.name);
    }
    case "bind": {
      const st = await stat(spec.hostPath).catch((error: unknown) => volumeError(spec.hostPath, "a bind volume's host directory must exist", error));
      if (!st.isDirectory()) volumeError(spec.hostPath, "a bind volume's host path must be a directory");
      return passthroughVolume(spec.hostPath, spec, spec.hostPath);
    }
    case "memfs": {
      const fs = new MemFs({ capacity: spec.capacity });
      return { fs, cleanup: () => Promise.resolve(fs.destroy()) };
    }
    case "backend":
      // The caller made the backend and keeps owning it: nothing to release here.
      return { fs: spec.readonly ? new ReadOnlyFs(spec.fs) : spec.fs, cleanup: () => Promise.resolve() };
    case "tmpfs":
      return { fs: undefined, tmpfs: { target: spec.guestPath, size: spec.size }, cleanup: () => Promise.resolve() };
    case "disk": {
      const st = await stat(spec.imagePath).catch((error: unknown) => volumeError(spec.imagePath, "a disk volume's image must exist", error));
      if (!st.isFile() && !st.isBlockDevice()) volumeError(spec.imagePath, "a disk volume's image must be a file or a block device");
      return { fs: undefined, cleanup: () => Promise.resolve() };
    }
  }
}

function passthroughVolume(rootDir: string, spec: NamedVolumeSpec | BindVolumeSpec, input: string): VolumeBackend {
  let passthrough: PassthroughFs;
  try {
    passthrough = new PassthroughFs({ rootDir, readOnly: spec.readonly, ...(spec.quota === undefined ? {} : { quota: spec.quota }) });
  } catch (error) {
    return volumeError(input, `cannot serve ${rootDir}`, error);
  }
  return {
    fs: spec.hooks === undefined ? passthrough : withHooks(passthrough, spec.hooks),
    cleanup: () => {
      passthrough.destroy();
      return Promise.resolve();
    },
  };
}

const WRITE_ACCESS = O.WRONLY | O.RDWR | O.TRUNC;

function readOnly(op: string): FsError {
  return new FsError("EROFS", { op, detail: "the volume is read-only" });
}

/**
 * A read-only view of a backend the caller made: enforced here on the host,
 * since the guest's `ro` mount option is the guest's to ignore.
 */
class ReadOnlyFs extends FsBackend {
  override setattr(): MaybePromise<Attr> {
    throw readOnly("setattr");
  }
  override symlink(): MaybePromise<Entry> {
    throw readOnly("symlink");
  }
  override mknod(): MaybePromise<Entry> {
    throw readOnly("mknod");
  }
  override mkdir(): MaybePromise<Entry> {
    throw readOnly("mkdir");
  }
  override unlink(): MaybePromise<void> {
    throw readOnly("unlink");
  }
  override rmdir(): MaybePromise<void> {
    throw readOnly("rmdir");
  }
  override rename(): MaybePromise<void> {
    throw readOnly("rename");
  }
  override link(): MaybePromise<Entry> {
    throw readOnly("link");
  }
  override create(): MaybePromise<CreateReply> {
    throw readOnly("create");
  }
  override open(ctx: Context, ino: number, flags: number): MaybePromise<OpenReply> {
    if ((flags & WRITE_ACCESS) !== 0) throw readOnly("open");
    return super.open(ctx, ino, flags);
  }
  override write(): MaybePromise<number> {
    throw readOnly("write");
  }
  override fallocate(): MaybePromise<void> {
    throw readOnly("fallocate");
  }
  override setxattr(): MaybePromise<void> {
    throw readOnly("setxattr");
  }
  override removexattr(): MaybePromise<void> {
    throw readOnly("removexattr");
  }
  override copyFileRange(): MaybePromise<number> {
    throw readOnly("copyFileRange");
  }
  override access(ctx: Context, ino: number, mask: number): MaybePromise<void> {
    if ((mask & ACCESS.W_OK) !== 0) throw readOnly("access");
    return super.access(ctx, ino, mask);
  }
}
