// Patches: changes written into a sandbox root's upper before the guest
// boots (files, directories, symlinks, scripts), recorded by a fluent builder
// as plain objects and applied in order through the filesystem contract.
import { randomBytes } from "node:crypto";
import { lstat, open, readdir, readlink, stat } from "node:fs/promises";
import { posix, resolve } from "node:path";
import {
  FsError,
  NAME_MAX,
  PATH_MAX,
  PathFs,
  RENAME,
  ROOT_CONTEXT,
  isDirectory,
  toBytes,
  type Context,
  type DynFileSystem,
  type PathLike,
} from "@msb/fs";
import { SandboxError, type SandboxErrorCode } from "./errors.js";

/** Writes `content` (text as UTF-8) to a new file at `path`. */
export interface TextPatch {
  readonly kind: "text";
  readonly path: string;
  readonly content: string | Uint8Array;
  /** Permission bits of the file. */
  readonly mode: number;
  /** Overwrite whatever is at `path`; otherwise an existing path fails. */
  readonly replace: boolean;
}

/** Copies the regular file `hostPath` (followed if a symlink) to `path`. */
export interface CopyFilePatch {
  readonly kind: "copyFile";
  readonly path: string;
  /** Absolute host path. */
  readonly hostPath: string;
  /** Permission bits of the file; `undefined` keeps the host file's. */
  readonly mode: number | undefined;
  readonly replace: boolean;
}

/** Copies the host directory tree `hostPath` to `path`, symlinks and modes kept. */
export interface CopyDirPatch {
  readonly kind: "copyDir";
  readonly path: string;
  /** Absolute host path. */
  readonly hostPath: string;
  readonly replace: boolean;
}

/** Creates symlink `path` pointing at `target` (stored as given). */
export interface SymlinkPatch {
  readonly kind: "symlink";
  readonly path: string;
  readonly target: string;
  readonly replace: boolean;
}

/** Creates directory `path` and its missing parents; an existing directory is no error. */
export interface MkdirPatch {
  readonly kind: "mkdir";
  readonly path: string;
  /** Permission bits of `path` if it is created (parents get `0o755`). */
  readonly mode: number;
}

/** Removes `path` and everything below it; a missing path is no error. */
export interface RemovePatch {
  readonly kind: "remove";
  readonly path: string;
}

/** Appends `content` to the file at `path`, creating it (mode `0o644`) when missing. */
export interface AppendPatch {
  readonly kind: "append";
  readonly path: string;
  readonly content: string | Uint8Array;
}

/** One recorded patch operation; {@link applyPatches} runs a list of them in order. */
export type PatchOp = TextPatch | CopyFilePatch | CopyDirPatch | SymlinkPatch | MkdirPatch | RemovePatch | AppendPatch;

/** Options of the patch operations that create a file. */
export interface PatchFileOptions {
  /** Permission bits (`0` to `0o7777`). */
  readonly mode?: number;
  /** Overwrite whatever is at the path (a directory too). Default `false`: an existing path fails. */
  readonly replace?: boolean;
}

/** Options of {@link PatchBuilder.copyDir} and {@link PatchBuilder.symlink}. */
export interface PatchReplaceOptions {
  /** Overwrite whatever is at the path. Default `false`: an existing path fails. */
  readonly replace?: boolean;
}

/** Where {@link scriptPatches} puts scripts; the sandbox puts it on `PATH` for exec and shell. */
export const SCRIPTS_DIR = "/.msb/scripts";

const FILE_MODE = 0o644;
const DIR_MODE = 0o755;
const SCRIPT_MODE = 0o755;
const CHUNK_BYTES = 1024 * 1024;
const SLASH = Buffer.from("/");

/**
 * Checks that `path` is an absolute, normalized guest path (no empty, `.` or
 * `..` component, no trailing slash, no NUL, within PATH_MAX and NAME_MAX)
 * and not `/`, throwing a {@link SandboxError} with `code` and the path as input.
 * Shared by patches and volumes.
 *
 * @example
 * ```ts
 * checkGuestPath("/etc/motd", "ERR_MSB_INVALID_CONFIG", "patch path"); // "/etc/motd"
 * ```
 */
export function checkGuestPath(path: unknown, code: SandboxErrorCode, what: string): string {
  const fail = (why: string): never => {
    throw new SandboxError(code, inputOf(path), `${what} ${why}`);
  };
  if (typeof path !== "string") return fail("must be a string");
  if (!path.startsWith("/")) fail("must be an absolute guest path");
  if (path === "/") fail("must not be the root directory");
  if (path.includes("\0")) fail("must not contain a NUL byte");
  if (toBytes(path).length >= PATH_MAX) fail(`must be shorter than ${PATH_MAX} bytes`);
  for (const part of path.slice(1).split("/")) {
    if (part === "" || part === "." || part === "..") fail("must be normalized (no empty, '.' or '..' component, no trailing '/')");
    if (toBytes(part).length > NAME_MAX) fail(`has a component longer than ${NAME_MAX} bytes`);
  }
  return path;
}

/**
 * A value for an error message: a string quoted, other primitives as they
 * are, anything else by its type.
 *
 * @example
 * ```ts
 * showValue("64 MB"); // "\"64 MB\""
 * ```
 */
export function showValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  return typeof value === "number" || typeof value === "boolean" || value === undefined || value === null ? String(value) : typeof value;
}

/**
 * A value as the `input` of an error: a string as it is, anything else as
 * {@link showValue} shows it.
 *
 * @example
 * ```ts
 * inputOf(42); // "42"
 * ```
 */
export function inputOf(value: unknown): string {
  return typeof value === "string" ? value : showValue(value);
}

function invalid(input: string, message: string): never {
  throw new SandboxError("ERR_MSB_INVALID_CONFIG", input, message);
}

function checkMode(mode: unknown, path: string): number {
  if (typeof mode === "number" && Number.isInteger(mode) && mode >= 0 && mode <= 0o7777) return mode;
  return invalid(path, `patch mode must be an integer from 0 to 0o7777, got ${showValue(mode)}`);
}

function checkReplace(replace: unknown, path: string): boolean {
  if (replace === undefined || typeof replace === "boolean") return replace === true;
  return invalid(path, `patch option replace must be a boolean, got ${showValue(replace)}`);
}

function checkContent(content: unknown, path: string): string | Uint8Array {
  if (typeof content === "string" || content instanceof Uint8Array) return content;
  return invalid(path, "patch content must be a string or a Uint8Array");
}

function checkHostPath(hostPath: unknown, guestPath: string): string {
  if (typeof hostPath !== "string" || hostPath === "" || hostPath.includes("\0")) {
    return invalid(guestPath, `patch host path must be a non-empty string without NUL, got ${showValue(hostPath)}`);
  }
  // Resolved now, so a later change of the working directory does not change what is copied.
  return resolve(hostPath);
}

/**
 * Records patch operations for a sandbox root, in order, as plain
 * {@link PatchOp} objects ({@link PatchBuilder.ops}); every argument is
 * checked when recorded (`ERR_MSB_INVALID_CONFIG`, input the guest path).
 * {@link applyPatches} writes them.
 *
 * Paths are absolute and normalized. `text`, `file`, `copyFile`, `copyDir`
 * and `symlink` fail on an existing path unless `replace: true`; `mkdir` and
 * `remove` are idempotent. Missing parent directories are created (`0o755`).
 * Everything created belongs to root.
 *
 * @example
 * ```ts
 * const patches = new PatchBuilder()
 *   .text("/etc/motd", "welcome\n", { replace: true })
 *   .copyFile("./build/app", "/usr/local/bin/app")
 *   .mkdir("/var/lib/app", 0o700)
 *   .remove("/etc/cron.d");
 * await applyPatches(upper, patches.ops);
 * ```
 */
export class PatchBuilder {
  readonly #ops: PatchOp[] = [];

  /** The operations recorded so far, in order. */
  get ops(): readonly PatchOp[] {
    return this.#ops;
  }

  /** Writes `content` to a new file at `path` (mode `0o644` unless given). */
  text(path: string, content: string | Uint8Array, options: PatchFileOptions = {}): this {
    checkGuestPath(path, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({
      kind: "text",
      path,
      content: checkContent(content, path),
      mode: checkMode(options.mode ?? FILE_MODE, path),
      replace: checkReplace(options.replace, path),
    });
  }

  /** Copies host file `hostFile` to `path` (mode `0o644` unless given). */
  file(path: string, hostFile: string, options: PatchFileOptions = {}): this {
    return this.#copyFile(hostFile, path, options.mode ?? FILE_MODE, options.replace);
  }

  /** Copies host file `hostSrc` to `guestDst`, keeping the host file's mode unless `mode` is given. */
  copyFile(hostSrc: string, guestDst: string, options: PatchFileOptions = {}): this {
    return this.#copyFile(hostSrc, guestDst, options.mode, options.replace);
  }

  /**
   * Copies host directory `hostSrcDir` to `guestDst`, recursively: files with
   * their content and mode, directories with their mode, symlinks as symlinks.
   * Hard links become separate files; devices, FIFOs and sockets fail the patch.
   */
  copyDir(hostSrcDir: string, guestDst: string, options: PatchReplaceOptions = {}): this {
    checkGuestPath(guestDst, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({
      kind: "copyDir",
      path: guestDst,
      hostPath: checkHostPath(hostSrcDir, guestDst),
      replace: checkReplace(options.replace, guestDst),
    });
  }

  /** Creates symlink `linkPath` pointing at `target` (relative or absolute, not resolved). */
  symlink(target: string, linkPath: string, options: PatchReplaceOptions = {}): this {
    checkGuestPath(linkPath, "ERR_MSB_INVALID_CONFIG", "patch path");
    if (typeof target !== "string" || target === "" || target.includes("\0") || toBytes(target).length >= PATH_MAX) {
      invalid(linkPath, `symlink target must be a non-empty string without NUL, shorter than ${PATH_MAX} bytes`);
    }
    return this.#add({ kind: "symlink", path: linkPath, target, replace: checkReplace(options.replace, linkPath) });
  }

  /** Creates directory `path` and its parents, like `mkdir -p`; `mode` (default `0o755`) applies to `path` if created. */
  mkdir(path: string, mode: number = DIR_MODE): this {
    checkGuestPath(path, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({ kind: "mkdir", path, mode: checkMode(mode, path) });
  }

  /** Removes `path` recursively, like `rm -rf`; a missing path is no error. */
  remove(path: string): this {
    checkGuestPath(path, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({ kind: "remove", path });
  }

  /** Appends `content` to the file at `path`, creating it (mode `0o644`) and its parents when missing. */
  append(path: string, content: string | Uint8Array): this {
    checkGuestPath(path, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({ kind: "append", path, content: checkContent(content, path) });
  }

  /**
   * Throws `ERR_MSB_INVALID_CONFIG` when patches were recorded but the root
   * is a disk image (`rootKind === "disk"`): its filesystem is the guest
   * kernel's, so the host cannot write into it before boot.
   */
  assertSupported(rootKind: string): void {
    if (rootKind === "disk" && this.#ops.length > 0) {
      invalid("patch", "patches need a root served from the host (an image or a directory); a disk-image root cannot be patched");
    }
  }

  #copyFile(hostSrc: string, guestDst: string, mode: number | undefined, replace: boolean | undefined): this {
    checkGuestPath(guestDst, "ERR_MSB_INVALID_CONFIG", "patch path");
    return this.#add({
      kind: "copyFile",
      path: guestDst,
      hostPath: checkHostPath(hostSrc, guestDst),
      mode: mode === undefined ? undefined : checkMode(mode, guestDst),
      replace: checkReplace(replace, guestDst),
    });
  }

  #add(op: PatchOp): this {
    this.#ops.push(Object.freeze(op));
    return this;
  }
}

/**
 * The patch operations that install `scripts` (name → content) as files
 * `/.msb/scripts/NAME` of mode `0o755`, replacing earlier versions. A name
 * must be one path component: not empty, `.` or `..`, no `/` or NUL, at most
 * NAME_MAX bytes (`ERR_MSB_INVALID_CONFIG`, input the name).
 *
 * @example
 * ```ts
 * const ops = scriptPatches({ greet: "#!/bin/sh\necho hello \"$@\"\n" });
 * await applyPatches(upper, ops); // the guest runs `greet world`
 * ```
 */
export function scriptPatches(scripts: ReadonlyMap<string, string> | Readonly<Record<string, string>>): PatchOp[] {
  const entries = scripts instanceof Map ? [...(scripts as ReadonlyMap<string, string>)] : Object.entries(scripts);
  return entries.map(([name, content]) => {
    if (typeof name !== "string" || name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0")) {
      invalid(inputOf(name), "script name must be one path component: not empty, '.' or '..', without '/' or NUL");
    }
    if (toBytes(name).length > NAME_MAX) invalid(name, `script name must be at most ${NAME_MAX} bytes`);
    if (typeof content !== "string") invalid(name, "script content must be a string");
    return Object.freeze({ kind: "text", path: `${SCRIPTS_DIR}/${name}`, content, mode: SCRIPT_MODE, replace: true });
  });
}

/**
 * Applies `ops` in order to `root` (a sandbox root's upper, or any
 * filesystem), as `ctx` (root by default): everything created belongs to
 * `ctx`'s uid and gid and has exactly the mode asked for.
 *
 * Each operation is atomic where the contract allows: files, symlinks and
 * copied trees are built under a temporary name in the destination's
 * directory and renamed into place, so a failure leaves neither a
 * half-written destination nor the temporary; a failed append is cut back to
 * the old size. Host files are streamed in 1 MiB chunks. The first failure
 * stops the run with `ERR_MSB_PATCH_FAILED` (input the guest path, `errno`
 * and `cause` from the filesystem or host).
 *
 * @example
 * ```ts
 * const upper = new MemFs();
 * await applyPatches(upper, new PatchBuilder().text("/etc/hostname", "box\n").ops);
 * ```
 */
export async function applyPatches(root: DynFileSystem, ops: readonly PatchOp[], ctx: Context = ROOT_CONTEXT): Promise<void> {
  const patcher = new Patcher(new PathFs(root, { ctx, umask: 0, chunkSize: CHUNK_BYTES }), ctx);
  for (const op of ops) {
    try {
      await patcher.apply(op);
    } catch (error) {
      if (SandboxError.isInstance(error)) throw error;
      throw new SandboxError("ERR_MSB_PATCH_FAILED", op.path, `patch ${op.kind} failed: ${messageOf(error)}`, {
        cause: error,
        errno: errnoOf(error),
      });
    }
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The errno name of a contract `FsError` or a Node.js system error, else `undefined`.
 *
 * @example
 * ```ts
 * errnoOf(new FsError("ENOSPC")); // "ENOSPC"
 * ```
 */
export function errnoOf(error: unknown): string | undefined {
  if (FsError.isInstance(error)) return error.code;
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}

function isFsCode(error: unknown, code: string): boolean {
  return FsError.isInstance(error) && error.code === code;
}

/** A name for building something beside `path` before it is renamed over it. */
function tempBeside(path: string): string {
  return posix.join(posix.dirname(path), `.msb-patch-${randomBytes(8).toString("hex")}`);
}

/** `dir/name` as bytes. */
function childPath(dir: Buffer, name: Buffer): Buffer {
  return Buffer.concat([dir, SLASH, name]);
}

class Patcher {
  readonly #files: PathFs;
  readonly #ctx: Context;

  constructor(files: PathFs, ctx: Context) {
    this.#files = files;
    this.#ctx = ctx;
  }

  async apply(op: PatchOp): Promise<void> {
    switch (op.kind) {
      case "text":
        return this.#place(op.path, op.replace, async (temp) => {
          await this.#files.writeFile(temp, op.content, { mode: op.mode, exclusive: true });
          await this.#own(temp, op.mode);
        });
      case "copyFile":
        return this.#place(op.path, op.replace, (temp) => this.#copyHostFile(op.hostPath, temp, op.mode));
      case "copyDir":
        return this.#place(op.path, op.replace, (temp) => this.#copyHostDir(Buffer.from(op.hostPath), temp));
      case "symlink":
        return this.#place(op.path, op.replace, async (temp) => {
          await this.#files.symlink(op.target, temp);
          await this.#files.lchown(temp, this.#ctx.uid, this.#ctx.gid);
        });
      case "mkdir":
        return this.#mkdirs(op.path, op.mode);
      case "remove":
        return this.#remove(op.path);
      case "append":
        return this.#append(op.path, op.content);
    }
  }

  /**
   * Fails on an existing `path` unless `replace`, makes its parents, builds
   * the new entry under a temporary name with `build`, and renames it into
   * place; the temporary is removed if anything fails.
   */
  async #place(path: string, replace: boolean, build: (temp: string) => Promise<void>): Promise<void> {
    // Checked first so a big copy is not made only to be refused; the rename's NOREPLACE settles a race.
    if (!replace && (await this.#files.exists(path))) {
      throw new SandboxError("ERR_MSB_PATCH_FAILED", path, "the path exists (pass replace: true to overwrite it)", { errno: "EEXIST" });
    }
    await this.#mkdirs(posix.dirname(path), DIR_MODE);
    const temp = tempBeside(path);
    try {
      await build(temp);
      if (replace) await this.#clearForRename(temp, path);
      await this.#files.rename(temp, path, replace ? 0 : RENAME.NOREPLACE);
    } catch (error) {
      // The temporary is ours alone; failing to remove it must not hide why the patch failed.
      await this.#files.rm(temp, { recursive: true, force: true }).catch(() => undefined);
      throw error;
    }
  }

  /** rename(2) replaces a file atomically but not a directory (or a file by a directory): those are removed first. */
  async #clearForRename(source: string, dest: string): Promise<void> {
    let destIsDir: boolean;
    try {
      destIsDir = isDirectory((await this.#files.lstat(dest)).mode);
    } catch (error) {
      if (isFsCode(error, "ENOENT")) return;
      throw error;
    }
    if (destIsDir || isDirectory((await this.#files.lstat(source)).mode)) {
      await this.#files.rm(dest, { recursive: true, force: true });
    }
  }

  /** Gives `path` (not a symlink) to the patch's owner with exactly `mode`; chown first, since it may clear setuid. */
  async #own(path: PathLike, mode: number): Promise<void> {
    await this.#files.lchown(path, this.#ctx.uid, this.#ctx.gid);
    await this.#files.chmod(path, mode);
  }

  /** `mkdir -p`: the last directory gets `mode`, missing parents `0o755`; an existing directory (or symlink to one) is kept as is. */
  async #mkdirs(path: string, mode: number): Promise<void> {
    if (path === "/") return;
    const parts = path.slice(1).split("/");
    for (let depth = 1; depth <= parts.length; depth++) {
      const dir = `/${parts.slice(0, depth).join("/")}`;
      const dirMode = depth === parts.length ? mode : DIR_MODE;
      try {
        await this.#files.mkdir(dir, { mode: dirMode });
      } catch (error) {
        if (!isFsCode(error, "EEXIST")) throw error;
        if (!isDirectory((await this.#files.stat(dir)).mode)) throw new FsError("ENOTDIR", { op: "mkdir", path: dir });
        continue;
      }
      await this.#own(dir, dirMode);
    }
  }

  async #remove(path: string): Promise<void> {
    try {
      await this.#files.rm(path, { recursive: true, force: true });
    } catch (error) {
      // A missing parent means there is nothing to remove, as for rm -rf.
      if (!isFsCode(error, "ENOENT")) throw error;
    }
  }

  async #append(path: string, content: string | Uint8Array): Promise<void> {
    let size: number;
    try {
      const attr = await this.#files.stat(path);
      if (isDirectory(attr.mode)) throw new FsError("EISDIR", { op: "append", path });
      size = attr.size;
    } catch (error) {
      if (!isFsCode(error, "ENOENT")) throw error;
      return this.apply({ kind: "text", path, content, mode: FILE_MODE, replace: false });
    }
    try {
      await this.#files.appendFile(path, content);
    } catch (error) {
      // Cut back what was appended; if that fails too, the append's own error says more.
      await this.#files.truncate(path, size).catch(() => undefined);
      throw error;
    }
  }

  /** Streams host file `hostPath` into new guest file `dest` in 1 MiB chunks. */
  async #copyHostFile(hostPath: string | Buffer, dest: PathLike, mode: number | undefined): Promise<void> {
    const handle = await open(hostPath, "r");
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new FsError("EINVAL", { op: "copyFile", path: hostPath.toString(), detail: "the host path is not a regular file" });
      const fileMode = mode ?? st.mode & 0o7777;
      await this.#files.writeFile(dest, new Uint8Array(0), { mode: fileMode, exclusive: true });
      for (;;) {
        // A fresh buffer per chunk: a backend may keep the array it was given to write.
        const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
        const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, null);
        if (bytesRead === 0) break;
        await this.#files.appendFile(dest, chunk.subarray(0, bytesRead));
      }
      await this.#own(dest, fileMode);
    } finally {
      await handle.close();
    }
  }

  /** Copies host directory `hostDir` (followed if a symlink) to new guest directory `dest`. */
  async #copyHostDir(hostDir: Buffer, dest: string): Promise<void> {
    const st = await stat(hostDir);
    if (!st.isDirectory()) throw new FsError("ENOTDIR", { op: "copyDir", path: hostDir.toString(), detail: "the host path is not a directory" });
    await this.#copyTree(hostDir, Buffer.from(dest), st.mode & 0o7777);
  }

  /** Host and guest paths are bytes here, so names that are not UTF-8 round-trip. */
  async #copyTree(hostDir: Buffer, dest: Buffer, mode: number): Promise<void> {
    // Owner-only until filled, so the final mode (maybe read-only) cannot stop the copy.
    await this.#files.mkdir(dest, { mode: 0o700 });
    for (const name of await readdir(hostDir, { encoding: "buffer" })) {
      const hostPath = childPath(hostDir, name);
      const guestPath = childPath(dest, name);
      const st = await lstat(hostPath);
      if (st.isDirectory()) {
        await this.#copyTree(hostPath, guestPath, st.mode & 0o7777);
      } else if (st.isSymbolicLink()) {
        await this.#files.symlink(await readlink(hostPath, { encoding: "buffer" }), guestPath);
        await this.#files.lchown(guestPath, this.#ctx.uid, this.#ctx.gid);
      } else if (st.isFile()) {
        await this.#copyHostFile(hostPath, guestPath, undefined);
      } else {
        throw new FsError("EINVAL", { op: "copyDir", path: hostPath.toString(), detail: "only files, directories and symlinks can be copied" });
      }
    }
    await this.#own(dest, mode);
  }
}
