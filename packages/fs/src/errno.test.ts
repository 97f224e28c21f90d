import { describe, expect, it } from "vitest";
import { Errno, FsError, canonicalErrnoName, errnoMessage, errnoName, fsError } from "./errno.js";
import { ERRNO_TABLE } from "./errno-table.js";

describe("errno table", () => {
  it("has Linux x86_64 numbers", () => {
    expect(Errno.EPERM).toBe(1);
    expect(Errno.ENOENT).toBe(2);
    expect(Errno.EXDEV).toBe(18);
    expect(Errno.ENOSPC).toBe(28);
    expect(Errno.ENOSYS).toBe(38);
    expect(Errno.ENOTEMPTY).toBe(39);
    expect(Errno.ELOOP).toBe(40);
    expect(Errno.ENODATA).toBe(61);
    expect(Errno.EOPNOTSUPP).toBe(95);
    expect(Errno.EDQUOT).toBe(122);
    expect(Errno.EHWPOISON).toBe(133);
  });

  it("maps numbers to canonical names and back, aliases included", () => {
    for (const [name, [num]] of Object.entries(ERRNO_TABLE)) expect(errnoName(num)).toBe(name);
    expect(errnoName(-2)).toBe("ENOENT");
    expect(errnoName(41)).toBeUndefined();
    expect(canonicalErrnoName("ENOTSUP")).toBe("EOPNOTSUPP");
    expect(canonicalErrnoName("EWOULDBLOCK")).toBe("EAGAIN");
    expect(canonicalErrnoName("NOPE")).toBeUndefined();
    expect(canonicalErrnoName("toString")).toBeUndefined();
    expect(Errno.ENOTSUP).toBe(95);
    expect(errnoMessage("ENOENT")).toBe("No such file or directory");
  });

  it("has unique numbers", () => {
    const nums = Object.values(ERRNO_TABLE).map(([n]) => n);
    expect(new Set(nums).size).toBe(nums.length);
  });
});

describe("FsError", () => {
  it("carries code, positive errno and context in its message", () => {
    const err = new FsError("ENOENT", { op: "lookup", path: "etc/passwd", ino: 7 });
    expect(err).toBeInstanceOf(Error);
    expect(err.code).toBe("ENOENT");
    expect(err.errno).toBe(2);
    expect(err.op).toBe("lookup");
    expect(err.path).toBe("etc/passwd");
    expect(err.ino).toBe(7);
    expect(err.message).toBe("ENOENT: No such file or directory, lookup 'etc/passwd' (inode 7)");
    expect(err.name).toBe("FsError");
  });

  it("accepts numbers and aliases", () => {
    expect(new FsError(95).code).toBe("EOPNOTSUPP");
    expect(new FsError("ENOTSUP" as never).errno).toBe(95);
    expect(fsError("EEXIST").errno).toBe(17);
  });

  it("refuses values that are no errno", () => {
    expect(() => new FsError(41)).toThrow(TypeError);
    expect(() => new FsError("EBOGUS" as never)).toThrow(/not a Linux errno/);
  });

  it("recognises instances by brand, across copies", () => {
    expect(FsError.isInstance(new FsError("EIO"))).toBe(true);
    expect(FsError.isInstance(new Error("x"))).toBe(false);
    expect(FsError.isInstance(null)).toBe(false);
    expect(FsError.isInstance({ [Symbol.for("msb.FsError")]: true })).toBe(true);
  });

  it("converts Node fs errors keeping errno, path and syscall", async () => {
    const { readFile } = await import("node:fs/promises");
    const nodeError: unknown = await readFile("/definitely/missing/file").catch((e: unknown) => e);
    const err = FsError.from(nodeError);
    expect(err.code).toBe("ENOENT");
    expect(err.errno).toBe(2);
    expect(err.path).toBe("/definitely/missing/file");
    expect(err.op).toBe("open");
    expect(err.cause).toBe(nodeError);
  });

  it("converts native-style errors by negative errno and aliases by code", () => {
    expect(FsError.from({ errno: -18, code: "EXDEV", syscall: "openat2" }).code).toBe("EXDEV");
    expect(FsError.from({ errno: -95, code: "ENOTSUP" }).code).toBe("EOPNOTSUPP");
    expect(FsError.from({ errno: -61 }).code).toBe("ENODATA");
  });

  it("turns anything else into EIO with the cause attached", () => {
    const boom = new RangeError("boom");
    const err = FsError.from(boom, { op: "read" });
    expect(err.code).toBe("EIO");
    expect(err.cause).toBe(boom);
    expect(err.message).toContain("boom");
    expect(FsError.from("text").code).toBe("EIO");
    const same = new FsError("EBADF");
    expect(FsError.from(same)).toBe(same);
  });

  it("carries no stack frames unless captureStacks asks for them, and restores the stack limit", () => {
    const limit = Error.stackTraceLimit;
    expect(new FsError("ENOENT", { op: "lookup" }).stack).toBe("FsError: ENOENT: No such file or directory, lookup");
    FsError.captureStacks = true;
    try {
      expect(new FsError("ENOENT").stack).toMatch(/\n\s+at /);
    } finally {
      FsError.captureStacks = false;
    }
    expect(Error.stackTraceLimit).toBe(limit);
    expect(new Error("plain").stack).toMatch(/\n\s+at /);
  });
});
