import { describe, expect, it } from "vitest";
import { FsBackend } from "./backend.js";
import { FsError } from "./errno.js";
import { withHooks } from "./hooks.js";
import { toBytes } from "./names.js";
import { TreeFs } from "./tree-fs.fixture.js";
import type { Context, DataHookInfo } from "./index.js";

const ctx: Context = { uid: 0, gid: 0, pid: 1 };
const xor = (data: Uint8Array, info: DataHookInfo) => data.map((b, i) => b ^ ((info.offset + i) & 0xff));

function fileIn(tree: TreeFs) {
  const { entry, fh } = tree.create(ctx, 1, toBytes("f"), 0o644, 1, 0);
  return { ino: entry.ino, fh };
}

describe("withHooks", () => {
  it("stores transformed data and reads it back untransformed, offset by offset", async () => {
    const tree = new TreeFs();
    const fs = withHooks(tree, { onRead: xor, onWrite: xor });
    const { ino, fh } = fileIn(tree);
    expect(await fs.write(ctx, ino, fh, toBytes("hello "), 0, 0)).toBe(6);
    expect(await fs.write(ctx, ino, fh, toBytes("world"), 6, 0)).toBe(5);
    const stored = tree.read(ctx, ino, fh, 100, 0);
    expect(new TextDecoder().decode(stored)).not.toBe("hello world");
    expect(new TextDecoder().decode(await fs.read(ctx, ino, fh, 100, 0))).toBe("hello world");
    // A read in the middle decodes with the right offset.
    expect(new TextDecoder().decode(await fs.read(ctx, ino, fh, 3, 6))).toBe("wor");
  });

  it("passes context, inode, handle and offset to hooks", async () => {
    const tree = new TreeFs();
    const seen: DataHookInfo[] = [];
    const fs = withHooks(tree, {
      onWrite: (d, info) => (seen.push(info), d),
      onRead: (d, info) => (seen.push(info), d),
    });
    const { ino, fh } = fileIn(tree);
    await fs.write(ctx, ino, fh, toBytes("abc"), 3, 0);
    await fs.read(ctx, ino, fh, 2, 4);
    expect(seen).toEqual([
      { ctx, ino, fh, offset: 3 },
      { ctx, ino, fh, offset: 4 },
    ]);
  });

  it("supports asynchronous hooks", async () => {
    const tree = new TreeFs();
    const fs = withHooks(tree, {
      onWrite: async (d) => (await Promise.resolve(), d.map((b) => b + 1)),
      onRead: (d) => Promise.resolve(d.map((b) => b - 1)),
    });
    const { ino, fh } = fileIn(tree);
    await fs.write(ctx, ino, fh, toBytes("abc"), 0, 0);
    expect(new TextDecoder().decode(tree.read(ctx, ino, fh, 10, 0))).toBe("bcd");
    expect(new TextDecoder().decode(await fs.read(ctx, ino, fh, 10, 0))).toBe("abc");
  });

  it("stays synchronous over a synchronous backend when hooks are synchronous", () => {
    const tree = new TreeFs();
    const fs = withHooks(tree, { onRead: (d) => d, onWrite: (d) => d });
    const { ino, fh } = fileIn(tree);
    expect(fs.write(ctx, ino, fh, toBytes("x"), 0, 0)).toBe(1);
    expect(fs.read(ctx, ino, fh, 1, 0)).toEqual(toBytes("x"));
  });

  it("reports the caller's length when a length-changing hook was stored whole", async () => {
    const tree = new TreeFs();
    const fs = withHooks(tree, { onWrite: (d) => new Uint8Array([...d, ...d]) });
    const { ino, fh } = fileIn(tree);
    expect(await fs.write(ctx, ino, fh, toBytes("ab"), 0, 0)).toBe(2);
  });

  it("fails with EIO when a length-changing hook's data was stored partly", () => {
    class Short extends FsBackend {
      override write(): number {
        return 1;
      }
    }
    const fs = withHooks(new Short(), { onWrite: (d) => new Uint8Array([...d, 0]) });
    expect(() => fs.write(ctx, 2, 1, toBytes("ab"), 0, 0)).toThrow(/EIO.*stored 1 of 3/);
  });

  it("passes a short write through when the hook keeps the length", () => {
    class Short extends FsBackend {
      override write(): number {
        return 1;
      }
    }
    const fs = withHooks(new Short(), { onWrite: (d) => d });
    expect(fs.write(ctx, 2, 1, toBytes("ab"), 0, 0)).toBe(1);
  });

  it("refuses copyFileRange so copies pass through the hooks", () => {
    const fs = withHooks(new TreeFs(), { onRead: (d) => d });
    try {
      void fs.copyFileRange(ctx, 2, 1, 0, 3, 1, 0, 10, 0);
      expect.unreachable();
    } catch (error) {
      expect(FsError.isInstance(error) && error.code).toBe("ENOSYS");
    }
  });

  it("leaves every other operation to the inner filesystem", () => {
    const tree = new TreeFs();
    const fs = withHooks(tree, {});
    const entry = fs.mkdir(ctx, 1, toBytes("d"), 0o755, 0) as { ino: number };
    expect(tree.getattr(ctx, entry.ino).mode & 0o777).toBe(0o755);
  });
});
