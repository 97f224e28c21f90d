import { ACCESS, O, RENAME, ROOT_INO, S, bytesToString, setattrRequest } from "@msb/fs";
import { expectErrno } from "@msb/fs/testing";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT, n, readFile, snapshotTree, useBackends, useScratch } from "./scratch.fixture.js";

const scratch = useScratch();
const backend = useBackends();

describe("PassthroughFs readOnly", () => {
  it("answers EROFS to every change and still serves reads, leaving the host untouched", async () => {
    const dir = scratch();
    writeFileSync(join(dir, "f"), "content");
    mkdirSync(join(dir, "d"));
    symlinkSync("f", join(dir, "l"));
    const before = snapshotTree(dir);
    const fs = backend({ rootDir: dir, readOnly: true });
    const f = fs.lookup(ROOT, ROOT_INO, n("f"));
    const d = fs.lookup(ROOT, ROOT_INO, n("d"));
    const changes: [string, () => unknown][] = [
      ["create", () => fs.create(ROOT, ROOT_INO, n("new"), S.IFREG | 0o644, O.RDWR | O.CREAT, 0)],
      ["create of an existing name", () => fs.create(ROOT, ROOT_INO, n("f"), S.IFREG | 0o644, O.RDONLY | O.CREAT, 0)],
      ["mkdir", () => fs.mkdir(ROOT, ROOT_INO, n("new"), S.IFDIR | 0o755, 0)],
      ["mknod", () => fs.mknod(ROOT, ROOT_INO, n("new"), S.IFIFO | 0o644, 0, 0)],
      ["symlink", () => fs.symlink(ROOT, n("t"), ROOT_INO, n("new"))],
      ["link", () => fs.link(ROOT, f.ino, ROOT_INO, n("new"))],
      ["unlink", () => fs.unlink(ROOT, ROOT_INO, n("f"))],
      ["rmdir", () => fs.rmdir(ROOT, ROOT_INO, n("d"))],
      ["rename", () => fs.rename(ROOT, ROOT_INO, n("f"), d.ino, n("g"), 0)],
      ["rename exchange", () => fs.rename(ROOT, ROOT_INO, n("f"), ROOT_INO, n("d"), RENAME.EXCHANGE)],
      ["chmod", () => fs.setattr(ROOT, f.ino, setattrRequest({ mode: 0o600 }))],
      ["chown", () => fs.setattr(ROOT, f.ino, setattrRequest({ uid: 5 }))],
      ["truncate", () => fs.setattr(ROOT, f.ino, setattrRequest({ size: 0 }))],
      ["utimens", () => fs.setattr(ROOT, f.ino, setattrRequest({ mtime: "now" }))],
      ["open for writing", () => fs.open(ROOT, f.ino, O.WRONLY)],
      ["open with O_TRUNC", () => fs.open(ROOT, f.ino, O.RDONLY | O.TRUNC)],
      ["setxattr", () => fs.setxattr(ROOT, f.ino, n("user.a"), n("v"), 0)],
      ["removexattr", () => fs.removexattr(ROOT, f.ino, n("user.a"))],
      ["access W_OK", () => fs.access(ROOT, f.ino, ACCESS.W_OK)],
    ];
    for (const [what, change] of changes) {
      const error = await expectErrno(change, "EROFS");
      expect(error.message, what).toContain("EROFS");
    }
    expect(readFile(fs, f.ino)).toBe("content");
    expect(bytesToString(fs.readlink(ROOT, fs.lookup(ROOT, ROOT_INO, n("l")).ino))).toBe("f");
    fs.access(ROOT, f.ino, ACCESS.R_OK);
    expect(fs.statfs(ROOT, ROOT_INO).namelen).toBe(255);
    expect(snapshotTree(dir)).toBe(before);
  });
});
