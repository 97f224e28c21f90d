// Small helpers for this package's tests: the contract calls with the
// defaults a test would otherwise repeat. Not part of the public surface.
import { FsError, O, ROOT_INO, S, toBytes, type Context, type DirEntry } from "@msb/fs";
import { MemFs } from "./memfs.js";
import type { MemFsOptions } from "./options.js";

export const ROOT: Context = { uid: 0, gid: 0, pid: 1 };
export const ALICE: Context = { uid: 1000, gid: 1000, pid: 2 };
export const BOB: Context = { uid: 2000, gid: 2000, pid: 3 };

export const n = (name: string): Uint8Array => toBytes(name);

/** The errno code `run` fails with; throws when it succeeds or throws anything but an FsError. */
export function errno(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (FsError.isInstance(error)) return error.code;
    throw new Error(`expected an FsError, got ${String(error)}`, { cause: error });
  }
  throw new Error("expected an FsError, but the call succeeded");
}

/** A MemFs and shorthands over it, acting as `ctx`. */
export class Fixture {
  readonly fs: MemFs;

  constructor(
    options?: MemFsOptions,
    readonly ctx: Context = ROOT,
  ) {
    this.fs = new MemFs(options);
  }

  /** Creates a file (open read-write) in `parent`; returns its inode and handle. */
  create(name: string | Uint8Array, parent = ROOT_INO, mode = 0o644): { ino: number; fh: number } {
    const reply = this.fs.create(this.ctx, parent, toBytes(name), S.IFREG | mode, O.RDWR | O.CREAT, 0);
    return { ino: reply.entry.ino, fh: reply.fh };
  }

  /** Creates a file holding `content`, closed, its lookup kept; returns its inode. */
  file(name: string | Uint8Array, content: string | Uint8Array = "", parent = ROOT_INO): number {
    const { ino, fh } = this.create(name, parent);
    const data = toBytes(content);
    if (data.length > 0) this.fs.write(this.ctx, ino, fh, data, 0, 0);
    this.fs.release(this.ctx, ino, fh, 0);
    return ino;
  }

  mkdir(name: string | Uint8Array, parent = ROOT_INO, mode = 0o755): number {
    return this.fs.mkdir(this.ctx, parent, toBytes(name), S.IFDIR | mode, 0).ino;
  }

  /** Every entry of a directory, reading `size` bytes of dirents per call. */
  readdirAll(ino = ROOT_INO, size = 4096): DirEntry[] {
    const { fh } = this.fs.opendir(this.ctx, ino, O.RDONLY);
    const all: DirEntry[] = [];
    for (let offset = 0; ; ) {
      const batch = this.fs.readdir(this.ctx, ino, fh, offset, size);
      if (batch.length === 0) break;
      all.push(...batch);
      offset = batch[batch.length - 1]!.offset;
    }
    this.fs.releasedir(this.ctx, ino, fh, 0);
    return all;
  }

  /** Names in a directory, `.` and `..` left out, in readdir order. */
  names(ino = ROOT_INO): string[] {
    return this.readdirAll(ino)
      .map((e) => Buffer.from(e.name).toString("latin1"))
      .filter((name) => name !== "." && name !== "..");
  }

  /** Opens `ino` read-only, reads it whole, closes it. */
  content(ino: number): string {
    const { fh } = this.fs.open(this.ctx, ino, O.RDONLY);
    const data = this.fs.read(this.ctx, ino, fh, 1 << 30, 0);
    this.fs.release(this.ctx, ino, fh, 0);
    return Buffer.from(data).toString("latin1");
  }
}
