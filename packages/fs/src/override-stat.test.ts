import { S } from "./constants.js";
import { makedev } from "./mode.js";
import { describe, expect, it } from "vitest";
import { OVERRIDE_STAT_SIZE, OVERRIDE_STAT_XATTR, OverrideStatError, decodeOverrideStat, encodeOverrideStat } from "./index.js";
import { typeFitsHost } from "./override-stat.js";

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");
const unhex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s/g, ""), "hex"));

// Byte-exact golden vectors of DESIGN.md §3: u8 version=1, 3 zero bytes, u32 uid, gid, mode, rdev, little endian.
const GOLDEN: [string, { uid: number; gid: number; mode: number; rdev: number }, string][] = [
  ["root-owned 0644 file", { uid: 0, gid: 0, mode: S.IFREG | 0o644, rdev: 0 }, "01000000 00000000 00000000 a4810000 00000000"],
  ["uid 1000 gid 100 0755 directory", { uid: 1000, gid: 100, mode: S.IFDIR | 0o755, rdev: 0 }, "01000000 e8030000 64000000 ed410000 00000000"],
  ["/dev/null (char 1:3, 0666)", { uid: 0, gid: 0, mode: S.IFCHR | 0o666, rdev: makedev(1, 3) }, "01000000 00000000 00000000 b6210000 03010000"],
  ["block 259:0x12345 (minor above 255)", { uid: 6, gid: 6, mode: S.IFBLK | 0o660, rdev: makedev(259, 0x12345) }, "01000000 06000000 06000000 b0610000 45033112"],
  ["setuid fifo owned by the largest ids", { uid: 0xffff_ffff, gid: 0xffff_fffe, mode: S.IFIFO | 0o4777, rdev: 0 }, "01000000 ffffffff feffffff ff190000 00000000"],
  ["whiteout (char 0:0, mode 0)", { uid: 0, gid: 0, mode: S.IFCHR, rdev: 0 }, "01000000 00000000 00000000 00200000 00000000"],
];

describe("the override_stat codec", () => {
  it("is named user.msb.override_stat and 20 bytes long", () => {
    expect(OVERRIDE_STAT_XATTR).toBe("user.msb.override_stat");
    expect(OVERRIDE_STAT_SIZE).toBe(20);
  });

  for (const [what, stat, bytes] of GOLDEN) {
    it(`encodes and decodes ${what} byte for byte`, () => {
      expect(hex(encodeOverrideStat(stat))).toBe(bytes.replace(/\s/g, ""));
      expect(decodeOverrideStat(unhex(bytes))).toEqual(stat);
    });
  }

  it("decodes a view into a larger buffer (an xattr read into a pool)", () => {
    const pool = new Uint8Array(64);
    pool.set(unhex(GOLDEN[1]![2]), 7);
    expect(decodeOverrideStat(pool.subarray(7, 27))).toEqual(GOLDEN[1]![1]);
  });

  it.each([
    ["empty", ""],
    ["short", "01000000 00000000 00000000 a4810000 000000"],
    ["long", "01000000 00000000 00000000 a4810000 00000000 00"],
    ["version 0", "00000000 00000000 00000000 a4810000 00000000"],
    ["version 2", "02000000 00000000 00000000 a4810000 00000000"],
    ["non-zero padding", "01000100 00000000 00000000 a4810000 00000000"],
    ["no file type", "01000000 00000000 00000000 a4010000 00000000"],
    ["an unknown file type", "01000000 00000000 00000000 a4f10000 00000000"],
    ["mode bits above 16", "01000000 00000000 00000000 a4810100 00000000"],
  ])("refuses a value that is %s", (_what, bytes) => {
    expect(() => decodeOverrideStat(unhex(bytes))).toThrow(OverrideStatError);
  });

  it.each([
    ["a negative uid", { uid: -1, gid: 0, mode: S.IFREG, rdev: 0 }],
    ["a gid of 2^32", { uid: 0, gid: 2 ** 32, mode: S.IFREG, rdev: 0 }],
    ["a fractional rdev", { uid: 0, gid: 0, mode: S.IFCHR, rdev: 1.5 }],
    ["a mode without type", { uid: 0, gid: 0, mode: 0o644, rdev: 0 }],
  ])("refuses to encode %s", (_what, stat) => {
    const error = (() => {
      try {
        encodeOverrideStat(stat);
      } catch (e) {
        return e as OverrideStatError;
      }
      throw new Error("encoded");
    })();
    expect(error).toBeInstanceOf(OverrideStatError);
    expect(error.code).toBe("ERR_MSB_OVERRIDE_STAT");
  });

  it("stores every non-directory type on host regular files and only directories on directories", () => {
    for (const type of [S.IFREG, S.IFIFO, S.IFSOCK, S.IFCHR, S.IFBLK]) {
      expect(typeFitsHost(type | 0o644, S.IFREG)).toBe(true);
      expect(typeFitsHost(type | 0o644, S.IFDIR)).toBe(false);
    }
    expect(typeFitsHost(S.IFDIR | 0o755, S.IFDIR)).toBe(true);
    expect(typeFitsHost(S.IFDIR | 0o755, S.IFREG)).toBe(false);
    expect(typeFitsHost(S.IFLNK | 0o777, S.IFREG)).toBe(false);
    expect(typeFitsHost(S.IFREG | 0o644, S.IFLNK)).toBe(false);
  });
});
