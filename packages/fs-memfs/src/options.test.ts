import { ROOT_INO, S } from "@msb/fs";
import { describe, expect, it } from "vitest";
import { MemFs, type MemFsOptions } from "./index.js";
import { ROOT } from "./memfs.fixture.js";

describe("MemFs options", () => {
  it("defaults to no limits, the 'always' cache policy and a 0755 root owned by 0:0", () => {
    const fs = new MemFs();
    expect(fs.cachePolicy).toBe("always");
    expect(fs.getattr(ROOT, ROOT_INO)).toMatchObject({ ino: ROOT_INO, mode: S.IFDIR | 0o755, uid: 0, gid: 0, nlink: 2 });
  });

  it("takes the root's mode and owner and the cache policy", () => {
    const fs = new MemFs({ rootMode: 0o1777, rootUid: 1000, rootGid: 100, cache: "never" });
    expect(fs.getattr(ROOT, ROOT_INO)).toMatchObject({ mode: S.IFDIR | 0o1777, uid: 1000, gid: 100 });
    expect(fs.cachePolicy).toBe("never");
  });

  it("reads capacities written with binary units", () => {
    expect(new MemFs({ capacity: "1MiB" }).statfs(ROOT, ROOT_INO).blocks).toBe(256);
    expect(new MemFs({ capacity: "64k" }).statfs(ROOT, ROOT_INO).blocks).toBe(16);
  });

  it.each<[MemFsOptions, RegExp]>([
    [{ capacity: -1 }, /capacity/],
    [{ capacity: 1.5 }, /capacity/],
    [{ capacity: Number.NaN }, /capacity/],
    [{ capacity: "lots" }, /capacity/],
    [{ maxInodes: 0 }, /maxInodes/],
    [{ maxInodes: 2.5 }, /maxInodes/],
    [{ maxFileSize: -1 }, /maxFileSize/],
    [{ maxFileSize: Infinity }, /maxFileSize/],
    [{ cache: "sometimes" as "auto" }, /cache/],
    [{ rootMode: 0o10000 }, /rootMode/],
    [{ rootUid: -1 }, /rootUid/],
    [{ rootGid: 2 ** 32 }, /rootGid/],
    [{ capcity: 10 } as MemFsOptions, /unknown option "capcity"/],
  ])("refuses %o with a TypeError naming the option", (options, message) => {
    expect(() => new MemFs(options)).toThrow(TypeError);
    expect(() => new MemFs(options)).toThrow(message);
  });

  it("refuses options that are not an object", () => {
    expect(() => new MemFs(42 as unknown as MemFsOptions)).toThrow(/options must be an object/);
  });

  it("accepts Infinity as 'unlimited' for capacity and maxInodes", () => {
    expect(() => new MemFs({ capacity: Infinity, maxInodes: Infinity })).not.toThrow();
  });
});
