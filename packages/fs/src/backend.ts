import { FsError } from "./errno.js";
import { isPromiseLike } from "./maybe.js";
import type {
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
} from "./types.js";

/**
 * The base class of filesystem backends.
 *
 * Without an `inner` filesystem every operation answers `ENOSYS`, except
 * `init`, `destroy` and `forget` (nothing to do) and `batchForget` (which calls
 * `this.forget` per item, so a subclass overrides `forget` alone). With an
 * `inner` filesystem every operation is delegated to it, so a subclass
 * overrides just what it changes and calls `super`:
 *
 * @example
 * ```ts
 * class UpperCaseFs extends FsBackend {
 *   override async read(ctx: Context, ino: number, fh: number, size: number, offset: number) {
 *     const data = await super.read(ctx, ino, fh, size, offset);
 *     return new TextEncoder().encode(new TextDecoder().decode(data).toUpperCase());
 *   }
 * }
 * const fs = new UpperCaseFs(new MemFs());
 * ```
 */
export abstract class FsBackend implements DynFileSystem {
  /** The filesystem this one delegates to, if any. */
  protected readonly inner: DynFileSystem | undefined;

  constructor(inner?: DynFileSystem) {
    this.inner = inner;
  }

  /** The inner filesystem's cache policy, or `auto`. Subclasses override it to choose their own. */
  get cachePolicy(): CachePolicy {
    return this.inner?.cachePolicy ?? "auto";
  }

  /** The inner filesystem, or an `ENOSYS` error naming the operation. */
  private delegate(op: FsOperation): DynFileSystem {
    if (this.inner === undefined) throw new FsError("ENOSYS", { op, detail: `${this.constructor.name} does not implement it` });
    return this.inner;
  }

  init(): MaybePromise<void> {
    return this.inner?.init();
  }

  destroy(): MaybePromise<void> {
    return this.inner?.destroy();
  }

  lookup(ctx: Context, parent: number, name: Uint8Array): MaybePromise<Entry> {
    return this.delegate("lookup").lookup(ctx, parent, name);
  }

  forget(ctx: Context, ino: number, nlookup: number): MaybePromise<void> {
    return this.inner?.forget(ctx, ino, nlookup);
  }

  batchForget(ctx: Context, items: readonly (readonly [number, number])[]): MaybePromise<void> {
    let next = 0;
    // Stays synchronous while `forget` does, so a sync backend pays no microtask per batch.
    const rest = (): MaybePromise<void> => {
      while (next < items.length) {
        const [ino, nlookup] = items[next++]!;
        const pending = this.forget(ctx, ino, nlookup);
        if (isPromiseLike(pending)) return pending.then(rest);
      }
    };
    return rest();
  }

  getattr(ctx: Context, ino: number, fh?: number): MaybePromise<Attr> {
    return this.delegate("getattr").getattr(ctx, ino, fh);
  }

  setattr(ctx: Context, ino: number, req: SetattrRequest): MaybePromise<Attr> {
    return this.delegate("setattr").setattr(ctx, ino, req);
  }

  readlink(ctx: Context, ino: number): MaybePromise<Uint8Array> {
    return this.delegate("readlink").readlink(ctx, ino);
  }

  symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array): MaybePromise<Entry> {
    return this.delegate("symlink").symlink(ctx, target, parent, name);
  }

  mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number): MaybePromise<Entry> {
    return this.delegate("mknod").mknod(ctx, parent, name, mode, rdev, umask);
  }

  mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number): MaybePromise<Entry> {
    return this.delegate("mkdir").mkdir(ctx, parent, name, mode, umask);
  }

  unlink(ctx: Context, parent: number, name: Uint8Array): MaybePromise<void> {
    return this.delegate("unlink").unlink(ctx, parent, name);
  }

  rmdir(ctx: Context, parent: number, name: Uint8Array): MaybePromise<void> {
    return this.delegate("rmdir").rmdir(ctx, parent, name);
  }

  rename(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    newParent: number,
    newName: Uint8Array,
    flags: number,
  ): MaybePromise<void> {
    return this.delegate("rename").rename(ctx, parent, name, newParent, newName, flags);
  }

  link(ctx: Context, ino: number, newParent: number, newName: Uint8Array): MaybePromise<Entry> {
    return this.delegate("link").link(ctx, ino, newParent, newName);
  }

  open(ctx: Context, ino: number, flags: number): MaybePromise<OpenReply> {
    return this.delegate("open").open(ctx, ino, flags);
  }

  create(
    ctx: Context,
    parent: number,
    name: Uint8Array,
    mode: number,
    flags: number,
    umask: number,
  ): MaybePromise<CreateReply> {
    return this.delegate("create").create(ctx, parent, name, mode, flags, umask);
  }

  read(ctx: Context, ino: number, fh: number, size: number, offset: number): MaybePromise<Uint8Array> {
    return this.delegate("read").read(ctx, ino, fh, size, offset);
  }

  write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): MaybePromise<number> {
    return this.delegate("write").write(ctx, ino, fh, data, offset, flags);
  }

  flush(ctx: Context, ino: number, fh: number, lockOwner: number): MaybePromise<void> {
    return this.delegate("flush").flush(ctx, ino, fh, lockOwner);
  }

  fsync(ctx: Context, ino: number, fh: number, datasync: boolean): MaybePromise<void> {
    return this.delegate("fsync").fsync(ctx, ino, fh, datasync);
  }

  fallocate(ctx: Context, ino: number, fh: number, mode: number, offset: number, length: number): MaybePromise<void> {
    return this.delegate("fallocate").fallocate(ctx, ino, fh, mode, offset, length);
  }

  release(ctx: Context, ino: number, fh: number, flags: number): MaybePromise<void> {
    return this.delegate("release").release(ctx, ino, fh, flags);
  }

  statfs(ctx: Context, ino: number): MaybePromise<StatFs> {
    return this.delegate("statfs").statfs(ctx, ino);
  }

  setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number): MaybePromise<void> {
    return this.delegate("setxattr").setxattr(ctx, ino, name, value, flags);
  }

  getxattr(ctx: Context, ino: number, name: Uint8Array): MaybePromise<Uint8Array> {
    return this.delegate("getxattr").getxattr(ctx, ino, name);
  }

  listxattr(ctx: Context, ino: number): MaybePromise<Uint8Array[]> {
    return this.delegate("listxattr").listxattr(ctx, ino);
  }

  removexattr(ctx: Context, ino: number, name: Uint8Array): MaybePromise<void> {
    return this.delegate("removexattr").removexattr(ctx, ino, name);
  }

  opendir(ctx: Context, ino: number, flags: number): MaybePromise<OpenReply> {
    return this.delegate("opendir").opendir(ctx, ino, flags);
  }

  readdir(ctx: Context, ino: number, fh: number, offset: number, size: number): MaybePromise<DirEntry[]> {
    return this.delegate("readdir").readdir(ctx, ino, fh, offset, size);
  }

  readdirplus(ctx: Context, ino: number, fh: number, offset: number, size: number): MaybePromise<DirEntryPlus[]> {
    return this.delegate("readdirplus").readdirplus(ctx, ino, fh, offset, size);
  }

  releasedir(ctx: Context, ino: number, fh: number, flags: number): MaybePromise<void> {
    return this.delegate("releasedir").releasedir(ctx, ino, fh, flags);
  }

  fsyncdir(ctx: Context, ino: number, fh: number, datasync: boolean): MaybePromise<void> {
    return this.delegate("fsyncdir").fsyncdir(ctx, ino, fh, datasync);
  }

  access(ctx: Context, ino: number, mask: number): MaybePromise<void> {
    return this.delegate("access").access(ctx, ino, mask);
  }

  lseek(ctx: Context, ino: number, fh: number, offset: number, whence: number): MaybePromise<number> {
    return this.delegate("lseek").lseek(ctx, ino, fh, offset, whence);
  }

  copyFileRange(
    ctx: Context,
    inoIn: number,
    fhIn: number,
    offsetIn: number,
    inoOut: number,
    fhOut: number,
    offsetOut: number,
    length: number,
    flags: number,
  ): MaybePromise<number> {
    return this.delegate("copyFileRange").copyFileRange(
      ctx,
      inoIn,
      fhIn,
      offsetIn,
      inoOut,
      fhOut,
      offsetOut,
      length,
      flags,
    );
  }
}
