import { describe, expect, it } from "vitest";
import { FsError } from "./errno.js";
import { bytesEqual, bytesStartWith, bytesToString, isDotOrDotDot, joinPath, splitPath, toBytes, validateName } from "./names.js";

const bytes = (...b: number[]) => new Uint8Array(b);

describe("names", () => {
  it("round-trips bytes that are not UTF-8", () => {
    const raw = bytes(0x66, 0xff, 0xfe, 0x6f);
    expect(toBytes(raw)).toBe(raw);
    expect(bytesToString(raw)).toBe("f\ufffd\ufffdo");
    expect(bytesEqual(toBytes("é"), bytes(0xc3, 0xa9))).toBe(true);
  });

  it("compares and prefixes", () => {
    expect(bytesEqual(bytes(1, 2), bytes(1, 2))).toBe(true);
    expect(bytesEqual(bytes(1, 2), bytes(1, 3))).toBe(false);
    expect(bytesEqual(bytes(1), bytes(1, 2))).toBe(false);
    expect(bytesStartWith(toBytes(".wh.file"), toBytes(".wh."))).toBe(true);
    expect(bytesStartWith(toBytes(".wh"), toBytes(".wh."))).toBe(false);
  });

  it("knows dot names", () => {
    expect(isDotOrDotDot(toBytes("."))).toBe(true);
    expect(isDotOrDotDot(toBytes(".."))).toBe(true);
    expect(isDotOrDotDot(toBytes("..."))).toBe(false);
    expect(isDotOrDotDot(toBytes(".a"))).toBe(false);
  });

  it("validates names as the kernel would", () => {
    expect(() => validateName(new Uint8Array(255).fill(0x61), "mkdir")).not.toThrow();
    const tooLong = (): Uint8Array => validateName(new Uint8Array(256).fill(0x61), "mkdir");
    expect(tooLong).toThrow(FsError);
    expect(tooLong).toThrow(/ENAMETOOLONG/);
    expect(() => validateName(toBytes("a/b"), "create")).toThrow(/EINVAL/);
    expect(() => validateName(bytes(0x61, 0), "create")).toThrow(/EINVAL/);
    expect(() => validateName(toBytes(".."), "create")).toThrow(/EINVAL/);
    expect(() => validateName(toBytes(".."), "lookup", true)).not.toThrow();
    expect(() => validateName(new Uint8Array(0), "lookup")).toThrow(/ENOENT/);
    expect(validateName(bytes(0xff), "create")).toEqual(bytes(0xff));
  });

  it("splits and joins paths", () => {
    expect(splitPath("/a//b/").map(bytesToString)).toEqual(["a", "b"]);
    expect(splitPath("")).toEqual([]);
    expect(splitPath("///")).toEqual([]);
    expect(splitPath(bytes(0x2f, 0xff, 0x2f, 0x61)).map((p) => [...p])).toEqual([[0xff], [0x61]]);
    expect(bytesToString(joinPath(toBytes("a"), toBytes("b"), toBytes("c")))).toBe("a/b/c");
    expect(joinPath()).toEqual(new Uint8Array(0));
  });
});

describe("validateEntryName", () => {
  it("refuses what is not bytes, invalid names, and dots with the operation's errno", async () => {
    const { validateEntryName } = await import("./names.js");
    expect(() => validateEntryName("a", "mkdir", "EEXIST")).toThrow(/EINVAL.*name is not bytes/);
    expect(() => validateEntryName(toBytes("a/b"), "mkdir", "EEXIST")).toThrow(/EINVAL/);
    expect(() => validateEntryName(new Uint8Array(256).fill(0x61), "mkdir", "EEXIST")).toThrow(/ENAMETOOLONG/);
    expect(() => validateEntryName(toBytes(".."), "mkdir", "EEXIST", 7)).toThrow(/EEXIST.*inode 7/);
    expect(() => validateEntryName(toBytes("."), "unlink", "EISDIR")).toThrow(/EISDIR/);
    expect(() => validateEntryName(toBytes("ok"), "mkdir", "EEXIST")).not.toThrow();
  });
});
