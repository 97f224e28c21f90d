import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { close, constants as c, LAYER_OPS, layerWriter, layerWriterApply, layerWriterClose, lgetxattr, openat, type LayerWriter } from "../index.js";
import { rejected, useTmpDir } from "./helpers.js";

const IMPLICIT = Buffer.from("implicit");

/** Encodes ops as layerWriterApply reads them. */
class Ops {
  readonly parts: Buffer[] = [];
  op(code: number): this {
    this.parts.push(Buffer.from([code]));
    return this;
  }
  u32(n: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.parts.push(b);
    return this;
  }
  i64(n: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64LE(n);
    this.parts.push(b);
    return this;
  }
  bytes(value: string | Buffer): this {
    const b = Buffer.from(value);
    return this.u32(b.length).raw(b);
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  xattrs(list: [string, string][]): this {
    this.u32(list.length);
    for (const [name, value] of list) this.bytes(name).bytes(value);
    return this;
  }
  file(path: string, chunks: number, mode = 0o644, mtime = 1_000_000n, xattrs: [string, string][] = []): this {
    this.op(LAYER_OPS.OPEN_FILE).bytes(path);
    if (chunks > 0) this.op(LAYER_OPS.WRITE).u32(chunks);
    return this.op(LAYER_OPS.CLOSE_FILE).u32(mode).i64(mtime).xattrs(xattrs);
  }
  dir(path: string, mode = 0o755, xattrs: [string, string][] = []): this {
    return this.op(LAYER_OPS.DIRECTORY).bytes(path).u32(mode).xattrs(xattrs);
  }
  symlink(path: string, target: string): this {
    return this.op(LAYER_OPS.SYMLINK).bytes(path).bytes(target);
  }
  link(path: string, target: string): this {
    return this.op(LAYER_OPS.LINK).bytes(path).bytes(target);
  }
  get buffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

describe("layerWriter", () => {
  const tmp = useTmpDir();

  function open(): { root: number; writer: LayerWriter; done: () => void } {
    fs.mkdirSync(tmp.join("layer"));
    const root = openat(c.AT_FDCWD, tmp.join("layer"), c.O_RDONLY | c.O_DIRECTORY);
    const writer = layerWriter(root, "user.test", IMPLICIT);
    return {
      root,
      writer,
      done: () => {
        layerWriterClose(writer);
        close(root);
      },
    };
  }

  it("writes files in pieces, directories, symlinks and hard links with their metadata", async () => {
    const { writer, done } = open();
    try {
      const ops = new Ops()
        .dir("etc", 0o750, [["user.a", "1"]])
        .file("etc/big", 2, 0o640, 1234n, [["user.b", "2"]])
        .file("deep/er/empty", 0)
        .symlink("etc/link", "../nowhere")
        .link("etc/hard", "etc/big");
      await layerWriterApply(writer, ops.buffer, [Buffer.from("hello "), Buffer.from("world")]);
      // A later batch continues the same file tree; a file is replaced, a directory kept.
      await layerWriterApply(writer, new Ops().file("etc/big", 1).dir("etc", 0o700).buffer, [Buffer.from("new")]);
    } finally {
      done();
    }
    const layer = tmp.join("layer");
    expect(fs.readFileSync(`${layer}/etc/big`, "utf8")).toBe("new");
    expect(fs.readFileSync(`${layer}/etc/hard`, "utf8")).toBe("hello world");
    const hard = fs.statSync(`${layer}/etc/hard`);
    expect(hard.mode & 0o7777).toBe(0o640);
    expect(hard.mtimeMs).toBe(1_234_000);
    expect(lgetxattr(`${layer}/etc/hard`, "user.b").toString()).toBe("2");
    expect(fs.statSync(`${layer}/etc`).mode & 0o7777).toBe(0o700);
    expect(lgetxattr(`${layer}/etc`, "user.a").toString()).toBe("1");
    expect(fs.readlinkSync(`${layer}/etc/link`)).toBe("../nowhere");
    // Implied directories: 0700 with the implicit xattr.
    expect(fs.statSync(`${layer}/deep/er`).mode & 0o7777).toBe(0o700);
    expect(lgetxattr(`${layer}/deep/er`, "user.test").equals(IMPLICIT)).toBe(true);
    expect(fs.statSync(`${layer}/deep/er/empty`).size).toBe(0);
  });

  it("never writes through a symlink or out of the root, and says which op failed", async () => {
    const { writer, done } = open();
    fs.mkdirSync(tmp.join("outside"));
    try {
      await layerWriterApply(writer, new Ops().symlink("escape", tmp.join("outside")).buffer, []);
      const through = await rejected(layerWriterApply(writer, new Ops().dir("ok").file("escape/pwned", 0).buffer, []));
      expect(through).toMatchObject({ code: "ERR_MSB_LAYER_UNSAFE", index: 1, message: "goes through a symlink" });
      const linked = await rejected(layerWriterApply(writer, new Ops().link("stolen", "escape/x").buffer, []));
      expect(linked).toMatchObject({ code: "ERR_MSB_LAYER_UNSAFE", message: "links through a symlink" });
      const dotdot = await rejected(layerWriterApply(writer, new Ops().file("a/../../pwned", 0).buffer, []));
      expect(dotdot).toMatchObject({ code: "ERR_MSB_LAYER_UNSAFE", index: 0 });
      const replaced = await rejected(layerWriterApply(writer, new Ops().file("ok", 0).buffer, []));
      expect(replaced).toMatchObject({ code: "ERR_MSB_LAYER_REPLACES_DIR", index: 0 });
      const missing = await rejected(layerWriterApply(writer, new Ops().link("l", "nodir/x").buffer, []));
      expect(missing).toMatchObject({ code: "ENOENT", linkTarget: true });
      const malformed = await rejected(layerWriterApply(writer, new Ops().op(LAYER_OPS.WRITE).u32(1).buffer, []));
      expect(malformed).toMatchObject({ code: "ERR_INVALID_ARG_VALUE", index: 0 });
      expect(fs.readdirSync(tmp.join("outside"))).toEqual([]);
    } finally {
      done();
    }
  });

  it("rejects bad arguments and batches after close", async () => {
    const { writer, done } = open();
    done();
    await expect(layerWriterApply({} as LayerWriter, Buffer.alloc(0), [])).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
    await expect(layerWriterApply(writer, Buffer.alloc(0), ["x" as unknown as Uint8Array])).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
    await expect(layerWriterApply(writer, new Ops().dir("d").buffer, [])).rejects.toMatchObject({ code: "EBADF" });
  });
});
