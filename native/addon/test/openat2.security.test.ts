// Confinement cases for openat2: RESOLVE_BENEATH, RESOLVE_IN_ROOT,
// RESOLVE_NO_SYMLINKS, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_XDEV.
import fs from "node:fs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { close, constants, fstat, openat, openat2, openat2Async } from "../index.js";
import { expectErrno, rejected, useTmpDir } from "./helpers.js";

const {
  AT_FDCWD,
  O_DIRECTORY,
  O_PATH,
  O_RDONLY,
  RESOLVE_BENEATH,
  RESOLVE_IN_ROOT,
  RESOLVE_NO_MAGICLINKS,
  RESOLVE_NO_SYMLINKS,
  RESOLVE_NO_XDEV,
} = constants;

describe("openat2 confinement", () => {
  const tmp = useTmpDir();
  let root = -1;
  const opened: number[] = [];

  /**
   * <tmp>/outside.txt             "outside"
   * <tmp>/root/inside.txt         "inside"
   * <tmp>/root/etc/passwd         "clamped"
   * <tmp>/root/sub/
   * <tmp>/root/abs-out     -> <tmp>/outside.txt   (absolute)
   * <tmp>/root/abs-passwd  -> /etc/passwd         (absolute)
   * <tmp>/root/rel-up      -> ../outside.txt
   * <tmp>/root/sub/rel-in  -> ../inside.txt
   * <tmp>/root/proc-root   -> /proc/self/root     (path to a magic link)
   */
  beforeEach(() => {
    fs.writeFileSync(tmp.join("outside.txt"), "outside");
    fs.mkdirSync(tmp.join("root", "sub"), { recursive: true });
    fs.mkdirSync(tmp.join("root", "etc"));
    fs.writeFileSync(tmp.join("root", "inside.txt"), "inside");
    fs.writeFileSync(tmp.join("root", "etc", "passwd"), "clamped");
    fs.symlinkSync(tmp.join("outside.txt"), tmp.join("root", "abs-out"));
    fs.symlinkSync("/etc/passwd", tmp.join("root", "abs-passwd"));
    fs.symlinkSync("../outside.txt", tmp.join("root", "rel-up"));
    fs.symlinkSync("../inside.txt", tmp.join("root", "sub", "rel-in"));
    fs.symlinkSync("/proc/self/root", tmp.join("root", "proc-root"));
    root = openat(AT_FDCWD, tmp.join("root"), O_DIRECTORY | O_PATH);
  });

  afterEach(() => {
    for (const fd of opened.splice(0)) close(fd);
    close(root);
  });

  function read(dirfd: number, path: string, resolve: number): string {
    const fd = openat2(dirfd, path, { flags: O_RDONLY, resolve });
    opened.push(fd);
    return fs.readFileSync(fd, "utf8");
  }

  describe("RESOLVE_BENEATH", () => {
    it("allows paths that stay inside, including .. that does not escape and relative symlinks", () => {
      expect(read(root, "inside.txt", RESOLVE_BENEATH)).toBe("inside");
      expect(read(root, "sub/../inside.txt", RESOLVE_BENEATH)).toBe("inside");
      expect(read(root, "sub/rel-in", RESOLVE_BENEATH)).toBe("inside");
    });

    it("refuses ../x with EXDEV", () => {
      const err = expectErrno(() => openat2(root, "../outside.txt", { resolve: RESOLVE_BENEATH }), "EXDEV", "openat2");
      expect(err).toMatchObject({ errno: -18, path: "../outside.txt" });
      expectErrno(() => openat2(root, "..", { flags: O_PATH, resolve: RESOLVE_BENEATH }), "EXDEV");
      expectErrno(() => openat2(root, "sub/../../outside.txt", { resolve: RESOLVE_BENEATH }), "EXDEV");
    });

    it("refuses absolute paths and symlinks leading out (absolute or relative)", () => {
      expectErrno(() => openat2(root, "/etc/passwd", { resolve: RESOLVE_BENEATH }), "EXDEV");
      expectErrno(() => openat2(root, "abs-out", { resolve: RESOLVE_BENEATH }), "EXDEV");
      expectErrno(() => openat2(root, "abs-passwd", { resolve: RESOLVE_BENEATH }), "EXDEV");
      expectErrno(() => openat2(root, "rel-up", { resolve: RESOLVE_BENEATH }), "EXDEV");
      // Without confinement the same names do leave the directory.
      expect(read(root, "abs-out", 0)).toBe("outside");
      expect(read(root, "rel-up", 0)).toBe("outside");
    });

    it("refuses magic links such as /proc/self/root (EXDEV)", () => {
      const proc = openat(AT_FDCWD, "/proc/self", O_DIRECTORY | O_PATH);
      opened.push(proc);
      expectErrno(() => openat2(proc, "root/etc/passwd", { resolve: RESOLVE_BENEATH }), "EXDEV");
      expectErrno(() => openat2(proc, `fd/${root}`, { flags: O_PATH, resolve: RESOLVE_BENEATH }), "EXDEV");
    });

    it("rejects asynchronously the same way", async () => {
      const err = await rejected(openat2Async(root, "abs-out", { resolve: RESOLVE_BENEATH }));
      expect(err).toMatchObject({ code: "EXDEV", errno: -18, syscall: "openat2", path: "abs-out" });
    });
  });

  describe("RESOLVE_IN_ROOT", () => {
    it("clamps .. and absolute paths/symlinks to dirfd", () => {
      expect(read(root, "../../../etc/passwd", RESOLVE_IN_ROOT)).toBe("clamped");
      expect(read(root, "/etc/passwd", RESOLVE_IN_ROOT)).toBe("clamped");
      expect(read(root, "abs-passwd", RESOLVE_IN_ROOT)).toBe("clamped");
      expect(read(root, "/inside.txt", RESOLVE_IN_ROOT)).toBe("inside");
      // ../outside.txt from the root is <root>/outside.txt, which does not exist.
      expectErrno(() => openat2(root, "rel-up", { resolve: RESOLVE_IN_ROOT }), "ENOENT");
      // The absolute symlink to <tmp>/outside.txt is re-rooted too.
      expectErrno(() => openat2(root, "abs-out", { resolve: RESOLVE_IN_ROOT }), "ENOENT");
    });

    it("opens the very file under the root (same inode)", () => {
      const fd = openat2(root, "/../etc/passwd", { resolve: RESOLVE_IN_ROOT });
      opened.push(fd);
      expect(fstat(fd).ino).toBe(fs.statSync(tmp.join("root", "etc", "passwd"), { bigint: true }).ino);
    });

    it("refuses magic links (EXDEV)", () => {
      expectErrno(() => openat2(root, "proc-root/etc/passwd", { resolve: RESOLVE_IN_ROOT }), "ENOENT");
      const proc = openat(AT_FDCWD, "/proc/self", O_DIRECTORY | O_PATH);
      opened.push(proc);
      expectErrno(() => openat2(proc, "root/etc/passwd", { resolve: RESOLVE_IN_ROOT }), "EXDEV");
    });
  });

  describe("RESOLVE_NO_SYMLINKS", () => {
    it("refuses any symlink in the path with ELOOP, even one staying inside", () => {
      expect(read(root, "inside.txt", RESOLVE_NO_SYMLINKS)).toBe("inside");
      expectErrno(() => openat2(root, "sub/rel-in", { resolve: RESOLVE_NO_SYMLINKS }), "ELOOP", "openat2");
      expectErrno(() => openat2(root, "abs-out", { resolve: RESOLVE_NO_SYMLINKS }), "ELOOP");
      expectErrno(() => openat2(AT_FDCWD, tmp.join("root", "sub", "rel-in"), { resolve: RESOLVE_NO_SYMLINKS }), "ELOOP");
    });

    it("combines with RESOLVE_BENEATH", () => {
      expect(read(root, "sub/../inside.txt", RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)).toBe("inside");
      expectErrno(() => openat2(root, "sub/rel-in", { resolve: RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS }), "ELOOP");
    });
  });

  describe("RESOLVE_NO_MAGICLINKS", () => {
    it("refuses /proc/self/root and /proc/self/fd/N with ELOOP but allows ordinary symlinks", () => {
      expectErrno(() => openat2(AT_FDCWD, "/proc/self/root/etc/passwd", { resolve: RESOLVE_NO_MAGICLINKS }), "ELOOP");
      expectErrno(() => openat2(AT_FDCWD, `/proc/self/fd/${root}`, { flags: O_PATH, resolve: RESOLVE_NO_MAGICLINKS }), "ELOOP");
      // A regular symlink that points at a magic link: the magic link is still refused.
      expectErrno(() => openat2(root, "proc-root/etc/passwd", { resolve: RESOLVE_NO_MAGICLINKS }), "ELOOP");
      expect(read(root, "sub/rel-in", RESOLVE_NO_MAGICLINKS)).toBe("inside");
      // Without the flag the magic link is followed.
      const fd = openat2(AT_FDCWD, `/proc/self/fd/${root}`, { flags: O_PATH });
      opened.push(fd);
      expect(fstat(fd).ino).toBe(fstat(root).ino);
    });
  });

  describe("RESOLVE_NO_XDEV", () => {
    it("refuses to cross into another mount (EXDEV)", () => {
      const slash = openat(AT_FDCWD, "/", O_DIRECTORY | O_PATH);
      opened.push(slash);
      expectErrno(() => openat2(slash, "proc/self", { flags: O_PATH, resolve: RESOLVE_NO_XDEV }), "EXDEV");
      expect(read(root, "inside.txt", RESOLVE_NO_XDEV)).toBe("inside");
    });
  });
});
