import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { close, closeAsync, constants, openat, openat2, openat2Async, openatAsync } from "../index.js";
import { expectErrno, rejected, useTmpDir } from "./helpers.js";

const { AT_FDCWD, O_CLOEXEC, O_CREAT, O_DIRECTORY, O_EXCL, O_PATH, O_RDONLY, O_RDWR, O_WRONLY } = constants;

/** The `flags:` line of /proc/self/fdinfo/<fd> (octal). */
function fdFlags(fd: number): number {
  const line = fs.readFileSync(`/proc/self/fdinfo/${fd}`, "utf8").split("\n").find((l) => l.startsWith("flags:"));
  return parseInt((line ?? "flags: 0").split(/\s+/)[1] ?? "0", 8);
}

describe("openat2 / openat / close", () => {
  const tmp = useTmpDir();

  it("opens relative to AT_FDCWD and to a directory fd, always with O_CLOEXEC", () => {
    fs.writeFileSync(tmp.join("f"), "hello");
    const fd = openat2(AT_FDCWD, tmp.join("f"), { flags: O_RDONLY });
    try {
      expect(fs.readFileSync(fd, "utf8")).toBe("hello");
      expect(fdFlags(fd) & O_CLOEXEC).toBe(O_CLOEXEC);
    } finally {
      close(fd);
    }
    const dirfd = openat(AT_FDCWD, tmp.dir, O_DIRECTORY | O_PATH);
    try {
      expect(fdFlags(dirfd) & O_CLOEXEC).toBe(O_CLOEXEC);
      const f2 = openat(dirfd, "f");
      try {
        expect(fs.readFileSync(f2, "utf8")).toBe("hello");
      } finally {
        close(f2);
      }
      const f3 = openat2(dirfd, Buffer.from("f"));
      close(f3);
    } finally {
      close(dirfd);
    }
  });

  it("creates files with a mode (openat2 defaults mode to 0o666 with O_CREAT)", () => {
    const dirfd = openat(AT_FDCWD, tmp.dir, O_DIRECTORY);
    const old = process.umask(0o022);
    try {
      close(openat2(dirfd, "a", { flags: O_CREAT | O_WRONLY | O_EXCL, mode: 0o640 }));
      close(openat2(dirfd, "b", { flags: O_CREAT | O_WRONLY }));
      close(openat(dirfd, "c", O_CREAT | O_RDWR, 0o600));
      expect(fs.statSync(tmp.join("a")).mode & 0o777).toBe(0o640);
      expect(fs.statSync(tmp.join("b")).mode & 0o777).toBe(0o644);
      expect(fs.statSync(tmp.join("c")).mode & 0o777).toBe(0o600);
      const err = expectErrno(() => openat2(dirfd, "a", { flags: O_CREAT | O_EXCL }), "EEXIST", "openat2");
      expect(err.errno).toBe(-17);
      expect(err.path).toBe("a");
    } finally {
      process.umask(old);
      close(dirfd);
    }
  });

  it("surfaces kernel argument checks (mode without O_CREAT, unknown resolve bits) as EINVAL", () => {
    fs.writeFileSync(tmp.join("f"), "");
    expectErrno(() => openat2(AT_FDCWD, tmp.join("f"), { mode: 0o600 }), "EINVAL", "openat2");
    expectErrno(() => openat2(AT_FDCWD, tmp.join("f"), { resolve: 0x1000 }), "EINVAL", "openat2");
  });

  it("reports ENOENT with the path and message like node:fs", () => {
    const missing = tmp.join("nope", "x");
    const err = expectErrno(() => openat2(AT_FDCWD, missing), "ENOENT", "openat2");
    expect(err).toMatchObject({ errno: -2, path: missing });
    expect(err.message).toBe(`ENOENT: no such file or directory, openat2 '${missing}'`);
    expectErrno(() => openat(12345, "rel"), "EBADF", "openat");
    expectErrno(() => close(1_000_000), "EBADF", "close");
  });

  it("async forms open, reject and close", async () => {
    fs.writeFileSync(tmp.join("f"), "async");
    const fd = await openat2Async(AT_FDCWD, tmp.join("f"), {});
    expect(fs.readFileSync(fd, "utf8")).toBe("async");
    await closeAsync(fd);
    const fd2 = await openatAsync(AT_FDCWD, tmp.join("f"));
    await closeAsync(fd2);
    const err = await rejected(openat2Async(AT_FDCWD, tmp.join("missing")));
    expect(err).toMatchObject({ code: "ENOENT", errno: -2, syscall: "openat2", path: tmp.join("missing") });
    expect((await rejected(closeAsync(1_000_000))).code).toBe("EBADF");
  });
});
