// `sandbox.fs`: files in the guest, over the agent's fs operations (streamed
// in ≤ 3 MiB chunks with flow control), with the SDK's typed errors.
import { createReadStream, createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import { VmmError, type AgentClient, type GuestFileType, type GuestStat, type WireString } from "@msb/vmm";
import { SandboxError } from "./errors.js";

/** A directory entry of {@link SandboxFs.list}. */
export interface SandboxDirEntry {
  /** The name; bytes when it is not valid UTF-8. */
  readonly name: WireString;
  readonly type: GuestFileType;
  readonly size: number;
  /** Permission bits (with suid/sgid/sticky). */
  readonly mode: number;
  readonly modified: Date;
}

/** File status of {@link SandboxFs.stat}. */
export interface SandboxStat {
  readonly type: GuestFileType;
  readonly size: number;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly nlink: number;
  readonly accessed: Date;
  readonly modified: Date;
  readonly changed: Date;
  /** A symlink's target (with `follow: false`). */
  readonly target?: WireString;
}

/** Maps an agent error to `ERR_MSB_FS_OP` with its errno; other errors pass through. */
export function fsError(error: unknown, path: string): unknown {
  if (VmmError.is(error) && error.code === "ERR_VMM_AGENT") {
    return new SandboxError("ERR_MSB_FS_OP", path, error.message, { cause: error, ...(error.agentCode === undefined ? {} : { errno: error.agentCode }) });
  }
  if (VmmError.is(error)) return new SandboxError("ERR_MSB_STATE", path, `the sandbox failed: ${error.message}`, { cause: error });
  return error;
}

/** Runs an agent call, mapping its errors. */
async function guarded<T>(path: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw fsError(error, path);
  }
}

/** Chunks of a host file, sized for the agent's 3 MiB frames. */
const HOST_CHUNK = 3 * 1024 * 1024;

const toStat = (stat: GuestStat): SandboxStat => ({
  type: stat.type,
  size: stat.size,
  mode: stat.mode,
  uid: stat.uid,
  gid: stat.gid,
  nlink: stat.nlink,
  accessed: new Date(stat.atimeMs),
  modified: new Date(stat.mtimeMs),
  changed: new Date(stat.ctimeMs),
  ...(stat.target === undefined ? {} : { target: stat.target }),
});

/**
 * Files in a sandbox's guest. Paths are absolute guest paths. Failures in the
 * guest are `ERR_MSB_FS_OP` with the errno name in `errno`.
 *
 * @example
 * ```ts
 * await sandbox.fs.write("/work/input.json", JSON.stringify({ n: 1 }));
 * for (const entry of await sandbox.fs.list("/work")) console.log(entry.name, entry.size);
 * await sandbox.fs.copyToHost("/work/result.bin", "./result.bin");
 * ```
 */
export class SandboxFs {
  /** @internal */
  constructor(private readonly agent: AgentClient) {}

  /** A whole file's bytes. */
  read(path: string): Promise<Uint8Array> {
    return guarded(path, () => this.agent.readFileBytes(path));
  }

  /** A whole file as UTF-8 text. */
  async readToString(path: string): Promise<string> {
    return Buffer.from(await this.read(path)).toString("utf8");
  }

  /** Writes a file (replacing it atomically) from text, bytes or a stream of chunks; resolves with the bytes written. */
  write(path: string, data: string | Uint8Array | AsyncIterable<Uint8Array> | Iterable<Uint8Array>, options: { mode?: number } = {}): Promise<number> {
    const source = typeof data === "string" ? Buffer.from(data) : data;
    return guarded(path, () => this.agent.writeFile(path, source, options));
  }

  /** Streams a file's bytes in chunks of at most 3 MiB. */
  async *readStream(path: string, options: { offset?: number; length?: number } = {}): AsyncIterable<Uint8Array> {
    try {
      yield* this.agent.readFile(path, options);
    } catch (error) {
      throw fsError(error, path);
    }
  }

  /** Writes a file from a stream of chunks (any size; sent in ≤ 3 MiB pieces). */
  writeStream(path: string, source: AsyncIterable<Uint8Array>, options: { mode?: number; append?: boolean } = {}): Promise<number> {
    return guarded(path, () => this.agent.writeFile(path, source, options));
  }

  /** A directory's entries, sorted by name. */
  async list(path: string): Promise<SandboxDirEntry[]> {
    const entries = await guarded(path, () => this.agent.list(path));
    return entries.map((e) => ({ name: e.name, type: e.type, size: e.size, mode: e.mode, modified: new Date(e.mtimeMs) }));
  }

  /** File status; `follow: false` describes a symlink itself. */
  async stat(path: string, options: { follow?: boolean } = {}): Promise<SandboxStat> {
    return toStat(await guarded(path, () => this.agent.stat(path, options)));
  }

  /** True when the path exists (a dangling symlink counts). */
  async exists(path: string): Promise<boolean> {
    try {
      await this.agent.stat(path, { follow: false });
      return true;
    } catch (error) {
      if (VmmError.is(error) && error.agentCode === "ENOENT") return false;
      throw fsError(error, path);
    }
  }

  /** Creates a directory; `recursive` makes parents and accepts an existing one. */
  mkdir(path: string, options: { recursive?: boolean; mode?: number } = {}): Promise<void> {
    return guarded(path, () => this.agent.mkdir(path, { parents: options.recursive === true, ...(options.mode === undefined ? {} : { mode: options.mode }) }));
  }

  /** Removes a file, or a directory tree with `recursive`. */
  remove(path: string, options: { recursive?: boolean } = {}): Promise<void> {
    return guarded(path, () => this.agent.remove(path, options));
  }

  rename(from: string, to: string): Promise<void> {
    return guarded(from, () => this.agent.rename(from, to));
  }

  /** Copies a file, or a directory tree with `recursive`, inside the guest. */
  copy(from: string, to: string, options: { recursive?: boolean } = {}): Promise<void> {
    return guarded(from, () => this.agent.copy(from, to, options));
  }

  /** Copies a host file into the guest, streamed. */
  copyFromHost(hostPath: string, guestPath: string, options: { mode?: number } = {}): Promise<number> {
    return guarded(guestPath, () => this.agent.writeFile(guestPath, createReadStream(hostPath, { highWaterMark: HOST_CHUNK }), options));
  }

  /** Copies a guest file to the host, streamed to a temporary file renamed into place. */
  async copyToHost(guestPath: string, hostPath: string): Promise<void> {
    const temp = join(dirname(hostPath), `.${String(process.pid)}-${String(Date.now())}.msb-copy`);
    try {
      await pipeline(this.readStream(guestPath), createWriteStream(temp, { flags: "wx" }));
      await rename(temp, hostPath);
    } catch (error) {
      await rm(temp, { force: true });
      throw fsError(error, guestPath);
    }
  }
}
