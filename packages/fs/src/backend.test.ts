import { describe, expect, it } from "vitest";
import { FsBackend } from "./backend.js";
import { FsError } from "./errno.js";
import { TreeFs } from "./tree-fs.fixture.js";
import { toBytes } from "./names.js";
import type { Context, DynFileSystem, FsOperation } from "./types.js";

const ctx: Context = { uid: 0, gid: 0, pid: 1 };

class Empty extends FsBackend {}

/** Every operation of the contract with arguments of the right shape. */
const calls: Record<FsOperation, (fs: DynFileSystem) => unknown> = {
  init: (fs) => fs.init(),
  destroy: (fs) => fs.destroy(),
  lookup: (fs) => fs.lookup(ctx, 1, toBytes("a")),
  forget: (fs) => fs.forget(ctx, 2, 1),
  batchForget: (fs) => fs.batchForget(ctx, [[2, 1]]),
  getattr: (fs) => fs.getattr(ctx, 1),
  setattr: (fs) => fs.setattr(ctx, 1, { valid: 0, mode: 0, uid: 0, gid: 0, size: 0, atime: { sec: 0, nsec: 0 }, mtime: { sec: 0, nsec: 0 }, ctime: { sec: 0, nsec: 0 }, fh: 0 }),
  readlink: (fs) => fs.readlink(ctx, 2),
  symlink: (fs) => fs.symlink(ctx, toBytes("t"), 1, toBytes("l")),
  mknod: (fs) => fs.mknod(ctx, 1, toBytes("n"), 0o10644, 0, 0),
  mkdir: (fs) => fs.mkdir(ctx, 1, toBytes("d"), 0o755, 0),
  unlink: (fs) => fs.unlink(ctx, 1, toBytes("a")),
  rmdir: (fs) => fs.rmdir(ctx, 1, toBytes("d")),
  rename: (fs) => fs.rename(ctx, 1, toBytes("a"), 1, toBytes("b"), 0),
  link: (fs) => fs.link(ctx, 2, 1, toBytes("h")),
  open: (fs) => fs.open(ctx, 2, 0),
  create: (fs) => fs.create(ctx, 1, toBytes("f"), 0o100644, 0o101, 0),
  read: (fs) => fs.read(ctx, 2, 1, 10, 0),
  write: (fs) => fs.write(ctx, 2, 1, toBytes("x"), 0, 0),
  flush: (fs) => fs.flush(ctx, 2, 1, 0),
  fsync: (fs) => fs.fsync(ctx, 2, 1, false),
  fallocate: (fs) => fs.fallocate(ctx, 2, 1, 0, 0, 10),
  release: (fs) => fs.release(ctx, 2, 1, 0),
  statfs: (fs) => fs.statfs(ctx, 1),
  setxattr: (fs) => fs.setxattr(ctx, 1, toBytes("user.a"), toBytes("v"), 0),
  getxattr: (fs) => fs.getxattr(ctx, 1, toBytes("user.a")),
  listxattr: (fs) => fs.listxattr(ctx, 1),
  removexattr: (fs) => fs.removexattr(ctx, 1, toBytes("user.a")),
  opendir: (fs) => fs.opendir(ctx, 1, 0),
  readdir: (fs) => fs.readdir(ctx, 1, 1, 0, 4096),
  readdirplus: (fs) => fs.readdirplus(ctx, 1, 1, 0, 4096),
  releasedir: (fs) => fs.releasedir(ctx, 1, 1, 0),
  fsyncdir: (fs) => fs.fsyncdir(ctx, 1, 1, false),
  access: (fs) => fs.access(ctx, 1, 4),
  lseek: (fs) => fs.lseek(ctx, 2, 1, 0, 3),
  copyFileRange: (fs) => fs.copyFileRange(ctx, 2, 1, 0, 3, 2, 0, 10, 0),
};

const noOps: FsOperation[] = ["init", "destroy", "forget", "batchForget"];

describe("FsBackend without an inner filesystem", () => {
  for (const [op, call] of Object.entries(calls) as [FsOperation, (fs: DynFileSystem) => unknown][]) {
    if (noOps.includes(op)) {
      it(`${op} does nothing`, async () => {
        await expect(Promise.resolve(call(new Empty()))).resolves.toBeUndefined();
      });
    } else {
      it(`${op} answers ENOSYS naming the operation and class`, () => {
        let caught: unknown;
        try {
          call(new Empty());
        } catch (error) {
          caught = error;
        }
        expect(FsError.isInstance(caught)).toBe(true);
        expect((caught as FsError).code).toBe("ENOSYS");
        expect((caught as FsError).op).toBe(op);
        expect((caught as FsError).message).toContain("Empty does not implement it");
      });
    }
  }

  it("has the auto cache policy", () => {
    expect(new Empty().cachePolicy).toBe("auto");
  });
});

describe("FsBackend with an inner filesystem", () => {
  /** Records each call it receives and answers with the operation's name. */
  function recorder(): { fs: DynFileSystem; seen: unknown[][] } {
    const seen: unknown[][] = [];
    const fs = new Proxy({} as DynFileSystem, {
      get: (_target, prop) =>
        prop === "cachePolicy" ? "always" : (...args: unknown[]) => {
          // An optional argument passed on as `undefined` is the same call.
          while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
          seen.push([prop, ...args]);
          return `${String(prop)} result`;
        },
    });
    return { fs, seen };
  }

  for (const [op, call] of Object.entries(calls) as [FsOperation, (fs: DynFileSystem) => unknown][]) {
    if (op === "batchForget") continue;
    it(`delegates ${op} with its arguments and result`, () => {
      const { fs, seen } = recorder();
      const direct = recorder();
      const result = call(new Empty(fs));
      const expected = call(direct.fs);
      expect(result).toEqual(expected);
      expect(seen).toEqual(direct.seen);
    });
  }

  it("delegates the cache policy", () => {
    expect(new Empty(recorder().fs).cachePolicy).toBe("always");
  });

  it("batchForget goes through this.forget so subclasses override one method", async () => {
    const forgotten: [number, number][] = [];
    class Counting extends FsBackend {
      override forget(_ctx: Context, ino: number, n: number): void {
        forgotten.push([ino, n]);
      }
    }
    const result = new Counting().batchForget(ctx, [
      [2, 1],
      [3, 4],
    ]);
    expect(result).toBeUndefined();
    expect(forgotten).toEqual([
      [2, 1],
      [3, 4],
    ]);
    class AsyncForget extends FsBackend {
      override async forget(_ctx: Context, ino: number, n: number): Promise<void> {
        await Promise.resolve();
        forgotten.push([ino, n]);
      }
    }
    forgotten.length = 0;
    await new AsyncForget().batchForget(ctx, [
      [5, 1],
      [6, 1],
    ]);
    expect(forgotten).toEqual([
      [5, 1],
      [6, 1],
    ]);
  });

  it("lets a subclass override one operation and call super", async () => {
    class Shouting extends FsBackend {
      override async read(c: Context, ino: number, fh: number, size: number, offset: number): Promise<Uint8Array> {
        const data = await super.read(c, ino, fh, size, offset);
        return toBytes(new TextDecoder().decode(data).toUpperCase());
      }
    }
    const tree = new TreeFs();
    const { entry, fh } = tree.create(ctx, 1, toBytes("f"), 0o644, 1, 0);
    tree.write(ctx, entry.ino, fh, toBytes("hello"), 0);
    const fs = new Shouting(tree);
    expect(new TextDecoder().decode(await fs.read(ctx, entry.ino, fh, 100, 0))).toBe("HELLO");
    expect(fs.getattr(ctx, entry.ino)).toMatchObject({ size: 5 });
  });
});
