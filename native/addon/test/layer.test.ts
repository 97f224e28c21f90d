import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { close, constants as c, layerUnpacker, layerUnpackerEnd, layerUnpackerWrite, lgetxattr, openat, type LayerUnpacker } from "../index.js";
import { rejected, useTmpDir } from "./helpers.js";

const OVERRIDE = "user.test.override";

interface Member {
  readonly name: string;
  /** ustar typeflag: "0" file, "1" hard link, "2" symlink, "3" char device, "5" directory. */
  readonly type?: string;
  readonly data?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly linkname?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
}

function field(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length, "latin1");
}

/** A POSIX ustar archive of `members` (names up to 100 bytes), end-of-archive blocks included. */
function ustar(members: readonly Member[]): Buffer {
  const blocks: Buffer[] = [];
  for (const m of members) {
    const data = Buffer.from(m.data ?? "");
    const header = Buffer.alloc(512);
    header.write(m.name, 0, 100, "latin1");
    field(header, 100, 8, m.mode ?? 0o644);
    field(header, 108, 8, m.uid ?? 0);
    field(header, 116, 8, m.gid ?? 0);
    field(header, 124, 12, data.length);
    field(header, 136, 12, 1_234);
    header.write(m.type ?? "0", 156, 1, "latin1");
    header.write(m.linkname ?? "", 157, 100, "latin1");
    header.write("ustar\u000000", 257, 8, "latin1");
    field(header, 329, 8, m.devmajor ?? 0);
    field(header, 337, 8, m.devminor ?? 0);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  return Buffer.concat([...blocks, Buffer.alloc(1024)]);
}

/** The override value for uid, gid, mode and rdev (@msb/fs's format). */
function override(uid: number, gid: number, mode: number, rdev = 0): Buffer {
  const value = Buffer.alloc(20);
  value.writeUInt8(1, 0);
  value.writeUInt32LE(uid, 4);
  value.writeUInt32LE(gid, 8);
  value.writeUInt32LE(mode, 12);
  value.writeUInt32LE(rdev, 16);
  return value;
}

describe("layerUnpacker", () => {
  const tmp = useTmpDir();

  /** Unpacks `tar` (in pieces of `piece` bytes) into a fresh `layer` directory; resolves with the end's outcome. */
  async function unpack(tar: Buffer, piece = 700): Promise<void> {
    fs.mkdirSync(tmp.join("layer"), { recursive: true });
    const root = openat(c.AT_FDCWD, tmp.join("layer"), c.O_RDONLY | c.O_DIRECTORY);
    try {
      const unpacker = layerUnpacker(root, OVERRIDE);
      for (let off = 0; off < tar.length; off += piece) {
        if (!(await layerUnpackerWrite(unpacker, tar.subarray(off, off + piece)))) break;
      }
      await layerUnpackerEnd(unpacker, false);
    } finally {
      close(root);
    }
  }

  it("makes files, directories, symlinks, hard links and devices with their metadata, unprivileged", async () => {
    const umask = process.umask(0o022);
    await unpack(
      ustar([
        { name: "etc/", type: "5", mode: 0o750, uid: 7, gid: 8 },
        { name: "etc/big", data: "hello world".repeat(100), mode: 0o4755, uid: 1000, gid: 1000 },
        { name: "deep/er/empty" },
        { name: "etc/link", type: "2", linkname: "../nowhere" },
        { name: "etc/hard", type: "1", linkname: "etc/big" },
        { name: "dev/null", type: "3", mode: 0o666, devmajor: 1, devminor: 3 },
        { name: "etc/shared", data: "rw for all", mode: 0o666 },
        { name: "etc/replaced", data: "old" },
        { name: "etc/replaced", data: "new" },
        { name: "./etc//", type: "5", mode: 0o700 },
      ]),
    ).finally(() => process.umask(umask));
    const layer = tmp.join("layer");
    expect(fs.readFileSync(`${layer}/etc/hard`, "utf8")).toBe("hello world".repeat(100));
    expect(fs.statSync(`${layer}/etc/hard`).ino).toBe(fs.statSync(`${layer}/etc/big`).ino);
    const big = fs.statSync(`${layer}/etc/big`);
    // Host mode: the permission bits plus owner read/write, never set-id.
    expect(big.mode & 0o7777).toBe(0o755);
    expect(big.mtimeMs).toBe(1_234_000);
    expect(lgetxattr(`${layer}/etc/big`, OVERRIDE)).toEqual(override(1000, 1000, 0o104755));
    expect(fs.readFileSync(`${layer}/etc/replaced`, "utf8")).toBe("new");
    // Bits the umask (022 here) takes from a new file are set back.
    expect(fs.statSync(`${layer}/etc/shared`).mode & 0o777).toBe(0o666);
    // A directory entry over a directory keeps it and sets its metadata.
    expect(fs.statSync(`${layer}/etc`).mode & 0o7777).toBe(0o700);
    expect(lgetxattr(`${layer}/etc`, OVERRIDE)).toEqual(override(0, 0, 0o40700));
    expect(fs.readlinkSync(`${layer}/etc/link`)).toBe("../nowhere");
    expect(fs.lstatSync(`${layer}/dev/null`).isFile()).toBe(true);
    expect(lgetxattr(`${layer}/dev/null`, OVERRIDE)).toEqual(override(0, 0, 0o20666, (1 << 8) | 3));
    // The root and implied directories: root-owned 0755 as tar makes them.
    for (const dir of ["", "deep/er"]) expect(lgetxattr(`${layer}/${dir}`, OVERRIDE)).toEqual(override(0, 0, 0o40755));
    expect(fs.statSync(`${layer}/deep/er/empty`).size).toBe(0);
  });

  it("never writes outside the root, and names the entry that tried", async () => {
    fs.mkdirSync(tmp.join("outside"));
    const escape = { name: "escape", type: "2", linkname: tmp.join("outside") };
    const cases: [Member[], object][] = [
      [[escape, { name: "escape/pwned" }], { code: "ERR_MSB_LAYER_UNSAFE", entry: "escape/pwned", message: "goes through a symlink" }],
      [[escape, { name: "stolen", type: "1", linkname: "escape/x" }], { code: "ERR_MSB_LAYER_UNSAFE", entry: "stolen", message: "links through a symlink" }],
      [[{ name: "a/../../pwned" }], { code: "ERR_MSB_LAYER_UNSAFE", entry: "a/../../pwned", message: "has a '..' component" }],
      [[{ name: `${tmp.join("outside")}/abs` }], { code: "ERR_MSB_LAYER_UNSAFE", message: "has an absolute path" }],
      [[{ name: "h", type: "1", linkname: "../outside/x" }], { code: "ERR_MSB_LAYER_UNSAFE", entry: "h", message: "links to '../outside/x', outside the layer" }],
      [[{ name: "d/", type: "5" }, { name: "d" }], { code: "ERR_MSB_LAYER_REPLACES_DIR", entry: "d" }],
      [[{ name: "l", type: "1", linkname: "nodir/x" }], { code: "ENOENT", entry: "l", linkTarget: true }],
    ];
    for (const [members, expected] of cases) {
      fs.rmSync(tmp.join("layer"), { recursive: true, force: true });
      expect(await rejected(unpack(ustar(members)))).toMatchObject(expected);
    }
    expect(fs.readdirSync(tmp.join("outside"))).toEqual([]);
  });

  it("fails a truncated or malformed tar with libarchive's reason", async () => {
    const tar = ustar([{ name: "f", data: "x".repeat(5000) }]);
    expect(await rejected(unpack(tar.subarray(0, 2048)))).toMatchObject({ code: "ERR_MSB_LAYER_TAR", entry: "f" });
    fs.rmSync(tmp.join("layer"), { recursive: true });
    expect(await rejected(unpack(Buffer.alloc(4096, "not a tar")))).toMatchObject({ code: "ERR_MSB_LAYER_TAR" });
  });

  it("takes no more bytes after the archive ends, stops on abort, and rejects bad arguments", async () => {
    fs.mkdirSync(tmp.join("layer"));
    const root = openat(c.AT_FDCWD, tmp.join("layer"), c.O_RDONLY | c.O_DIRECTORY);
    try {
      const ended = layerUnpacker(root, OVERRIDE);
      expect(await layerUnpackerWrite(ended, ustar([{ name: "a", data: "a" }]))).toBe(true);
      // The reader stops at the end-of-archive blocks: later bytes are refused, not parsed.
      let taken = true;
      for (let i = 0; i < 100 && taken; i++) taken = await layerUnpackerWrite(ended, Buffer.alloc(512, 1));
      expect(taken).toBe(false);
      await layerUnpackerEnd(ended, false);
      await layerUnpackerEnd(ended, false);
      expect(fs.readFileSync(tmp.join("layer", "a"), "utf8")).toBe("a");

      const aborted = layerUnpacker(root, OVERRIDE);
      // Part of a header: the reader waits for the rest until the abort.
      expect(await layerUnpackerWrite(aborted, ustar([{ name: "b", data: "b" }]).subarray(0, 100))).toBe(true);
      expect(await rejected(layerUnpackerEnd(aborted, true))).toMatchObject({ code: "ERR_MSB_LAYER_TAR" });
      expect(fs.existsSync(tmp.join("layer", "b"))).toBe(false);

      await expect(layerUnpackerWrite({} as LayerUnpacker, Buffer.alloc(1))).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
      await expect(layerUnpackerWrite(ended, "x" as unknown as Uint8Array)).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
      await expect(layerUnpackerEnd(ended, 1 as unknown as boolean)).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
      expect(() => layerUnpacker(-1, OVERRIDE)).toThrow();
    } finally {
      close(root);
    }
  });
});
