import { FOPEN, FsError, O, ROOT_INO } from "@msb/fs";
import { writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { PassthroughFs, type PassthroughFsOptions } from "./index.js";
import { ROOT, useBackends, useScratch, writeFile } from "./scratch.fixture.js";

const scratch = useScratch();
const backend = useBackends();

function constructionError(options: unknown): unknown {
  try {
    new PassthroughFs(options as PassthroughFsOptions).destroy();
  } catch (error) {
    return error;
  }
  throw new Error("constructed");
}

describe("PassthroughFs options", () => {
  it.each([
    ["rootDir", { rootDir: "" }],
    ["rootDir", { rootDir: 42 }],
    ["rootDir", { rootDir: "a\0b" }],
    ["quota", { quota: -1 }],
    ["quota", { quota: 1.5 }],
    ["quota", { quota: "lots" }],
    ["quota", { quota: 2 ** 60 }],
    ["readOnly", { readOnly: "yes" }],
    ["cache", { cache: "sometimes" }],
    ["logger", { logger: "console" }],
  ])("refuses a bad %s with a TypeError naming it", (name, bad) => {
    const error = constructionError({ rootDir: scratch(), ...bad });
    expect(error).toBeInstanceOf(TypeError);
    expect((error as TypeError).message).toContain(`option ${name}`);
  });

  it("takes the quota as bytes or as a size with a binary unit", () => {
    const dir = scratch();
    expect(backend({ rootDir: dir, quota: 1 << 20 }).usage.quota).toBe(1 << 20);
    expect(backend({ rootDir: dir, quota: "64MiB" }).usage.quota).toBe(64 << 20);
    expect(backend({ rootDir: dir }).usage.quota).toBe(Infinity);
  });

  it("refuses unknown options and non-objects", () => {
    expect((constructionError({ rootDir: scratch(), quotaBytes: 5 }) as Error).message).toContain('unknown option "quotaBytes"');
    expect(constructionError(undefined)).toBeInstanceOf(TypeError);
  });

  it("says clearly when rootDir is missing or not a directory", () => {
    const dir = scratch();
    const missing = constructionError({ rootDir: join(dir, "nope") });
    expect(FsError.isInstance(missing) && missing.code).toBe("ENOENT");
    expect((missing as Error).message).toContain("rootDir must be an existing directory");
    expect((missing as Error).message).toContain(join(dir, "nope"));
    writeFileSync(join(dir, "file"), "");
    const file = constructionError({ rootDir: join(dir, "file") });
    expect(FsError.isInstance(file) && file.code).toBe("ENOTDIR");
  });

  it("defaults to the auto cache policy and maps each policy to open flags", () => {
    const dir = scratch();
    const auto = backend({ rootDir: dir });
    expect(auto.cachePolicy).toBe("auto");
    const f = writeFile(auto, "f", "x");
    expect(auto.open(ROOT, f.ino, O.RDONLY).flags).toBe(0);
    const never = backend({ rootDir: dir, cache: "never" });
    const g = never.lookup(ROOT, ROOT_INO, new TextEncoder().encode("f"));
    expect(never.open(ROOT, g.ino, O.RDONLY).flags).toBe(FOPEN.DIRECT_IO);
    const always = backend({ rootDir: dir, cache: "always" });
    const h = always.lookup(ROOT, ROOT_INO, new TextEncoder().encode("f"));
    expect(always.open(ROOT, h.ino, O.RDONLY).flags).toBe(FOPEN.KEEP_CACHE);
    expect(always.opendir(ROOT, ROOT_INO, O.RDONLY).flags).toBe(FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE);
  });

  it("accepts a relative rootDir and serves it again after destroy and init", () => {
    const fs = backend({ rootDir: relative(process.cwd(), scratch()) });
    writeFile(fs, "kept", "data");
    fs.destroy();
    expect(() => fs.getattr(ROOT, ROOT_INO)).toThrow(FsError);
    fs.init();
    expect(fs.lookup(ROOT, ROOT_INO, new TextEncoder().encode("kept")).attr.size).toBe(4);
  });
});
