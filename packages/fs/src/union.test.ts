import { describe, expect, it } from "vitest";
import { FsBackend } from "./backend.js";
import { ROOT_INO } from "./constants.js";
import { FsError } from "./errno.js";
import { toBytes } from "./names.js";
import { PathFs } from "./path-fs.js";
import { TreeFs } from "./tree-fs.fixture.js";
import type { Context, DirEntry } from "./types.js";
import { isNoEntry, listEntries } from "./union.js";

/** A backend whose readdir answers the same batch whatever the cookie: a broken (or hostile) listing. */
class StuckListing extends FsBackend {
  override readdir(_ctx: Context, ino: number): DirEntry[] {
    return [{ ino, offset: 7, type: 4, name: toBytes("again") }];
  }
}

describe("listEntries", () => {
  it("lists a directory without . and .., across batches", async () => {
    const fs = new TreeFs();
    const files = new PathFs(fs);
    for (let i = 0; i < 3000; i++) await files.writeFile(`/f-${String(i).padStart(4, "0")}-${"x".repeat(40)}`, "");
    const names = (await listEntries(fs, ROOT_INO)).map((e) => new TextDecoder().decode(e.name));
    expect(names).toHaveLength(3000);
    expect(names).not.toContain(".");
  });

  it("answers EIO, also through PathFs, when the backend's cookies do not advance", async () => {
    const fs = new StuckListing(new TreeFs());
    const error = await listEntries(fs, ROOT_INO).catch((e: unknown) => e);
    expect(FsError.isInstance(error) && error.code).toBe("EIO");
    await expect(new PathFs(fs).readdir("/")).rejects.toMatchObject({ code: "EIO" });
  });
});

describe("isNoEntry", () => {
  it("is true for an FsError ENOENT only", () => {
    expect(isNoEntry(new FsError("ENOENT"))).toBe(true);
    expect(isNoEntry(new FsError("ENOTDIR"))).toBe(false);
    expect(isNoEntry(Object.assign(new Error("x"), { code: "ENOENT" }))).toBe(false);
  });
});
