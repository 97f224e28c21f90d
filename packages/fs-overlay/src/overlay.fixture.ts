import { populate } from "@msb/fs/testing";
import { FsBackend, PathFs, type Context, type CreateReply, type DynFileSystem, type Entry } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs, type OverlayFsOptions } from "./index.js";

/** A MemFs holding `files`: path → content (a path ending in `/` is a directory). */
export function memLayer(files: Record<string, string>): Promise<MemFs> {
  return populate(new MemFs(), files);
}

/** An initialised overlay, with PathFs clients on it and on its upper. */
export async function overlay(options: OverlayFsOptions): Promise<{ fs: OverlayFs; files: PathFs; upper: PathFs }> {
  const fs = new OverlayFs(options);
  await fs.init();
  return { fs, files: new PathFs(fs), upper: new PathFs(options.upper) };
}

/** A layer that counts the lookups it hands out (every Entry) and those given back. */
export class CountingFs extends FsBackend {
  held = 0;

  constructor(inner: DynFileSystem) {
    super(inner);
  }

  override async lookup(ctx: Context, parent: number, name: Uint8Array): Promise<Entry> {
    return this.#count(await super.lookup(ctx, parent, name));
  }

  override async mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    return this.#count(await super.mkdir(ctx, parent, name, mode, umask));
  }

  override async mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): Promise<Entry> {
    return this.#count(await super.mknod(ctx, parent, name, mode, rdev, umask));
  }

  override async symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): Promise<Entry> {
    return this.#count(await super.symlink(ctx, target, parent, name));
  }

  override async link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): Promise<Entry> {
    return this.#count(await super.link(ctx, ino, newParent, newName));
  }

  override async create(ctx: Context, parent: number, name: Uint8Array, mode: number, flags: number, umask: number): Promise<CreateReply> {
    const reply = await super.create(ctx, parent, name, mode, flags, umask);
    this.#count(reply.entry);
    return reply;
  }

  #count(entry: Entry): Entry {
    this.held++;
    return entry;
  }

  override async forget(ctx: Context, ino: number, nlookup: number): Promise<void> {
    this.held -= nlookup;
    await super.forget(ctx, ino, nlookup);
  }
}

/** Every path of a tree (directories with a trailing `/`), sorted, without the root. */
export async function tree(files: PathFs, skip: readonly string[] = []): Promise<string[]> {
  const out: string[] = [];
  for await (const e of files.walk("/")) {
    if (e.path === "" || skip.some((s) => e.path === s || e.path.startsWith(`${s}/`))) continue;
    out.push((e.attr.mode & 0o170000) === 0o040000 ? `${e.path}/` : e.path);
  }
  return out.sort();
}

/** A layer whose namespace calls answer after a short, varying delay, so racing callers interleave. */
export class JitteryFs extends FsBackend {
  #turn = 0;

  constructor(inner: DynFileSystem) {
    super(inner);
  }

  async #jitter(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.#turn++ % 3));
  }

  override async lookup(ctx: Context, parent: number, name: Uint8Array): Promise<Entry> {
    await this.#jitter();
    return super.lookup(ctx, parent, name);
  }

  override async mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): Promise<Entry> {
    await this.#jitter();
    return super.mkdir(ctx, parent, name, mode, umask);
  }

  override async rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number): Promise<void> {
    await this.#jitter();
    return super.rename(ctx, parent, name, newParent, newName, flags);
  }

  override async unlink(ctx: Context, parent: number, name: Uint8Array): Promise<void> {
    await this.#jitter();
    return super.unlink(ctx, parent, name);
  }
}

/** Every path of a tree with what it holds: file content, symlink target, or `dir`. */
export async function snapshot(files: PathFs): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for await (const e of files.walk("/")) {
    const kind = e.attr.mode & 0o170000;
    out[e.path] = kind === 0o040000 ? "dir" : kind === 0o120000 ? `-> ${await files.readlink(`/${e.path}`)}` : await files.readFile(`/${e.path}`, "utf8");
  }
  return out;
}
