import { spawn } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { O, ROOT_INO, S } from "../constants.js";
import { FsError, type ErrnoName } from "../errno.js";
import { isDotOrDotDot, toBytes } from "../names.js";
import { FsBackend } from "../backend.js";
import { PathFs } from "../path-fs.js";
import type { Attr, Context, DirEntry, DynFileSystem, Entry, MaybePromise } from "../types.js";

/** A temporary host directory for one test, removed by `cleanup`. */
export interface ScratchDir {
  readonly path: string;
  /** A fresh empty subdirectory (for backends that need several host dirs). */
  subdir(name: string): Promise<string>;
  cleanup(): Promise<void>;
}

/** Creates a {@link ScratchDir} under the OS temp dir (or `MSB_TEST_TMPDIR`). */
export async function createScratchDir(prefix = "msb-conformance-"): Promise<ScratchDir> {
  const path = await mkdtemp(join(process.env.MSB_TEST_TMPDIR ?? tmpdir(), prefix));
  const { mkdir } = await import("node:fs/promises");
  return {
    path,
    async subdir(name: string) {
      const dir = join(path, name);
      await mkdir(dir, { recursive: true });
      return dir;
    },
    cleanup: () => rm(path, { recursive: true, force: true }),
  };
}

/** The caller identities the kit uses. */
export const ROOT: Context = Object.freeze({ uid: 0, gid: 0, pid: 100 });
/** An unprivileged user, member of group 3000 too. */
export const ALICE: Context = Object.freeze({ uid: 1000, gid: 1000, pid: 101, groups: Object.freeze([1000, 3000]) });
/** Another unprivileged user. */
export const BOB: Context = Object.freeze({ uid: 2000, gid: 2000, pid: 102, groups: Object.freeze([2000]) });

/** Asserts that `run` fails with FsError `code` (and nothing else: no other exception type). */
export async function expectErrno(run: () => MaybePromise<unknown>, code: ErrnoName | readonly ErrnoName[]): Promise<FsError> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  const codes = typeof code === "string" ? [code] : code;
  if (caught === undefined) throw new Error(`expected ${codes.join(" or ")}, but the call succeeded`);
  if (!FsError.isInstance(caught)) {
    const described = caught instanceof Error ? `${caught.constructor.name}: ${caught.message}` : typeof caught;
    throw new Error(`expected FsError ${codes.join(" or ")}, got ${described}`, { cause: caught });
  }
  expect(codes, `FsError ${caught.code} (${caught.message})`).toContain(caught.code);
  return caught;
}

/** Name bytes from text. */
export const n = (name: string): Uint8Array => toBytes(name);

/**
 * Thin helpers over a DynFileSystem for the kit's tests: each call is the
 * plain contract call with defaults a test would otherwise repeat.
 */
export class Harness {
  constructor(
    readonly fs: DynFileSystem,
    readonly ctx: Context = ROOT,
  ) {}

  as(ctx: Context): Harness {
    return new Harness(this.fs, ctx);
  }

  lookup(name: string | Uint8Array, parent = ROOT_INO): Promise<Entry> {
    return Promise.resolve(this.fs.lookup(this.ctx, parent, toBytes(name)));
  }

  async getattr(ino: number, fh?: number): Promise<Attr> {
    return this.fs.getattr(this.ctx, ino, fh);
  }

  async mkdir(name: string | Uint8Array, mode = 0o755, parent = ROOT_INO, umask = 0): Promise<Entry> {
    return this.fs.mkdir(this.ctx, parent, toBytes(name), S.IFDIR | mode, umask);
  }

  /** Creates and opens a file read-write; returns its entry and handle. */
  async create(name: string | Uint8Array, mode = 0o644, parent = ROOT_INO, flags: number = O.RDWR | O.CREAT, umask = 0): Promise<{ entry: Entry; fh: number; ino: number }> {
    const reply = await this.fs.create(this.ctx, parent, toBytes(name), S.IFREG | mode, flags, umask);
    return { entry: reply.entry, fh: reply.fh, ino: reply.entry.ino };
  }

  /** Creates a file with `content`, closes it, and returns its inode. */
  async file(name: string | Uint8Array, content: string | Uint8Array = "", mode = 0o644, parent = ROOT_INO): Promise<number> {
    const { ino, fh } = await this.create(name, mode, parent);
    const data = toBytes(content);
    if (data.length > 0) expect(await this.fs.write(this.ctx, ino, fh, data, 0, 0)).toBe(data.length);
    await this.fs.release(this.ctx, ino, fh, O.RDWR);
    return ino;
  }

  async open(ino: number, flags: number = O.RDWR): Promise<number> {
    return (await this.fs.open(this.ctx, ino, flags)).fh;
  }

  async release(ino: number, fh: number, flags: number = O.RDWR): Promise<void> {
    await this.fs.release(this.ctx, ino, fh, flags);
  }

  async write(ino: number, fh: number, data: string | Uint8Array, offset = 0): Promise<number> {
    return this.fs.write(this.ctx, ino, fh, toBytes(data), offset, 0);
  }

  async read(ino: number, fh: number, size = 1 << 20, offset = 0): Promise<Uint8Array> {
    return this.fs.read(this.ctx, ino, fh, size, offset);
  }

  async readText(ino: number, fh: number, size = 1 << 20, offset = 0): Promise<string> {
    return new TextDecoder().decode(await this.read(ino, fh, size, offset));
  }

  /** Opens, reads everything, releases. */
  async content(ino: number): Promise<string> {
    const fh = await this.open(ino, O.RDONLY);
    try {
      return await this.readText(ino, fh);
    } finally {
      await this.release(ino, fh, O.RDONLY);
    }
  }

  async symlink(target: string | Uint8Array, name: string | Uint8Array, parent = ROOT_INO): Promise<Entry> {
    return this.fs.symlink(this.ctx, toBytes(target), parent, toBytes(name));
  }

  async unlink(name: string | Uint8Array, parent = ROOT_INO): Promise<void> {
    await this.fs.unlink(this.ctx, parent, toBytes(name));
  }

  async rmdir(name: string | Uint8Array, parent = ROOT_INO): Promise<void> {
    await this.fs.rmdir(this.ctx, parent, toBytes(name));
  }

  async rename(from: string, to: string, flags = 0, parent = ROOT_INO, newParent = parent): Promise<void> {
    await this.fs.rename(this.ctx, parent, toBytes(from), newParent, toBytes(to), flags);
  }

  /** Every entry of a directory in one pass, `.` and `..` included. */
  async readdirAll(ino = ROOT_INO, size = 4096): Promise<DirEntry[]> {
    const { fh } = await this.fs.opendir(this.ctx, ino, O.RDONLY | O.DIRECTORY);
    try {
      const all: DirEntry[] = [];
      let offset = 0;
      for (let guard = 0; guard < 100_000; guard++) {
        const batch = await this.fs.readdir(this.ctx, ino, fh, offset, size);
        if (batch.length === 0) return all;
        all.push(...batch);
        offset = batch[batch.length - 1]!.offset;
      }
      throw new Error("readdir did not end");
    } finally {
      await this.fs.releasedir(this.ctx, ino, fh, O.RDONLY);
    }
  }

  /** Names in a directory (without `.` and `..`), sorted. */
  async names(ino = ROOT_INO): Promise<string[]> {
    return (await this.readdirAll(ino))
      .filter((e) => !isDotOrDotDot(e.name))
      .map((e) => new TextDecoder().decode(e.name))
      .sort();
  }
}

/** True when `a` is later than `b`, or equal (clocks are coarse). */
export function notBefore(a: { sec: number; nsec: number }, b: { sec: number; nsec: number }): boolean {
  return a.sec > b.sec || (a.sec === b.sec && a.nsec >= b.nsec);
}

/** Sleeps long enough for a timestamp to move on a coarse clock. */
export function tick(ms = 15): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Writes `files` (path → content; a path ending in `/` is a directory) into
 * `fs` as root, parents first, and returns `fs`: a populated layer or backend
 * for tests of filesystems built from others.
 */
export async function populate<T extends DynFileSystem>(fs: T, files: Record<string, string>): Promise<T> {
  const paths = new PathFs(fs);
  for (const [path, content] of Object.entries(files)) {
    if (path.endsWith("/")) {
      await paths.mkdir(path, { recursive: true });
      continue;
    }
    const dir = path.slice(0, path.lastIndexOf("/"));
    if (dir !== "") await paths.mkdir(dir, { recursive: true });
    await paths.writeFile(path, content);
  }
  return fs;
}

/**
 * `fs` with every `read` delayed by `ms` milliseconds: makes a copy between
 * backends slow enough for a test to catch (and kill) it half-way.
 */
export function withSlowReads(fs: DynFileSystem, ms: number): DynFileSystem {
  class SlowReads extends FsBackend {
    override async read(ctx: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return super.read(ctx, ino, fh, size, offset);
    }
  }
  return new SlowReads(fs);
}

/** Sizes of the regular files in host directory `stagingDir` (none when it does not exist). */
export function stagedFileSizes(stagingDir: string): number[] {
  if (!existsSync(stagingDir)) return [];
  const sizes: number[] = [];
  for (const name of readdirSync(stagingDir)) {
    try {
      const st = statSync(join(stagingDir, name));
      if (st.isFile()) sizes.push(st.size);
    } catch {
      // Renamed into place between the listing and the stat.
    }
  }
  return sizes;
}

/**
 * Runs `argv` (a node process that copies a file of `fullSize` bytes through
 * host directory `stagingDir` and prints "done" when finished) and SIGKILLs
 * it as soon as part of the copy is in the staging directory. Returns what it
 * printed and the size of the partial copy it was killed at (`undefined` when
 * it finished first).
 */
export async function killMidCopy(argv: readonly string[], stagingDir: string, fullSize: number): Promise<{ output: string; partial: number | undefined }> {
  const child = spawn(process.execPath, argv, { stdio: ["ignore", "pipe", "inherit"] });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
  let partial: number | undefined;
  while (partial === undefined && !output.includes("done")) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    partial = stagedFileSizes(stagingDir).find((size) => size > 0 && size < fullSize);
  }
  child.kill("SIGKILL");
  await exited;
  return { output, partial };
}
