import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { constants, mount, mountAsync, statfs, umount2, umount2Async } from "../index.js";
import { expectErrno, rejected, useTmpDir } from "./helpers.js";

const c = constants;
const TMPFS_MAGIC = 0x01021994;

function isMountPoint(p: string): boolean {
  return fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((line) => line.split(" ")[4] === p);
}

describe("mount / umount2 (root)", () => {
  const tmp = useTmpDir();

  /** Runs `fn` and makes sure nothing stays mounted on `p` afterwards. */
  async function withCleanup(p: string, fn: () => Promise<void> | void): Promise<void> {
    try {
      await fn();
    } finally {
      while (isMountPoint(p)) umount2(p, c.MNT_DETACH);
    }
  }

  it("mounts a tmpfs on a temp dir and unmounts it", async () => {
    const mnt = tmp.join("mnt");
    fs.mkdirSync(mnt);
    const outerType = statfs(mnt).type;
    await withCleanup(mnt, () => {
      mount("tmpfs", mnt, "tmpfs", c.MS_NOSUID | c.MS_NODEV, "size=1m,mode=0700");
      expect(isMountPoint(mnt)).toBe(true);
      expect(statfs(mnt).type).toBe(TMPFS_MAGIC);
      expect(fs.statSync(mnt).mode & 0o777).toBe(0o700);
      fs.writeFileSync(`${mnt}/inside`, "x");
      expect(fs.readdirSync(mnt)).toEqual(["inside"]);
      umount2(mnt, 0);
      expect(isMountPoint(mnt)).toBe(false);
      expect(statfs(mnt).type).toBe(outerType);
      expect(fs.readdirSync(mnt)).toEqual([]);
    });
  });

  it("bind-mounts, remounts read-only (EROFS) and detaches, asynchronously", async () => {
    const src = tmp.join("src");
    const dst = tmp.join("dst");
    fs.mkdirSync(src);
    fs.mkdirSync(dst);
    fs.writeFileSync(`${src}/file`, "bound");
    await withCleanup(dst, async () => {
      await mountAsync(src, dst, null, c.MS_BIND, null);
      expect(fs.readFileSync(`${dst}/file`, "utf8")).toBe("bound");
      await mountAsync(null, dst, null, c.MS_REMOUNT | c.MS_BIND | c.MS_RDONLY, null);
      expect(() => fs.writeFileSync(`${dst}/new`, "")).toThrow(expect.objectContaining({ code: "EROFS" }));
      mount(null, dst, null, c.MS_PRIVATE);
      await umount2Async(dst, c.MNT_DETACH);
      expect(isMountPoint(dst)).toBe(false);
    });
  });

  it("reports EINVAL for a non-mount point, ENOENT for a missing target, ENODEV for an unknown fs type", async () => {
    const dir = tmp.join("plain");
    fs.mkdirSync(dir);
    const err = expectErrno(() => umount2(dir), "EINVAL", "umount2");
    expect(err).toMatchObject({ errno: -22, path: dir });
    expect(err.message).toBe(`EINVAL: invalid argument, umount2 '${dir}'`);
    expectErrno(() => mount("tmpfs", tmp.join("missing"), "tmpfs", 0, null), "ENOENT", "mount");
    await withCleanup(dir, async () => {
      expect((await rejected(mountAsync("none", dir, "no-such-fs-type", 0, null))).code).toBe("ENODEV");
    });
  });
});
