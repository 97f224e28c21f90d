// FUSE passthrough on real mounts: PassthroughFs names the host file of
// each open handle, and the kernel reads and writes it itself. Driven from
// child processes, like every mount test.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "@msb/fs";
import { PassthroughFs, type PassthroughFsOptions } from "@msb/fs-passthrough";
import { afterEach, describe, expect, it } from "vitest";
import { collectingLogger, type LogLine } from "./harness.fixture.js";
import { mountFuse, type FuseMount, type FuseMountOptions } from "./mount.js";
import { USER, fuseUsable, ok, scratch } from "./shell.fixture.js";

const skip = fuseUsable();
if (skip !== undefined) console.warn(`passthrough tests skipped: ${skip}`);

/** A PassthroughFs that counts the reads and writes reaching it. */
class Counting extends PassthroughFs {
  reads = 0;
  writes = 0;
  override read(ctx: Context, ino: number, fh: number, size: number, offset: number): Uint8Array {
    this.reads++;
    return super.read(ctx, ino, fh, size, offset);
  }
  override readInto(ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): number {
    this.reads++;
    return super.readInto(ctx, ino, fh, target, offset);
  }
  override write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number): number {
    this.writes++;
    return super.write(ctx, ino, fh, data, offset, flags);
  }
}

const python = (script: string): Promise<string> => ok(`python3 - <<'EOF'\n${script}\nEOF`);

describe.skipIf(skip !== undefined)("mountFuse with FUSE passthrough", () => {
  let base: string;
  let host: string;
  let mnt: string;
  let m: FuseMount | undefined;
  let fs: Counting;
  let logs: LogLine[];

  async function mountHost(fsOptions: Omit<PassthroughFsOptions, "rootDir"> = {}, options: FuseMountOptions = {}): Promise<FuseMount> {
    ({ base, mnt } = scratch());
    host = join(base, "host");
    mkdirSync(host);
    logs = [];
    fs = new Counting({ rootDir: host, ...fsOptions });
    m = await mountFuse(fs, mnt, { allowOther: true, logger: collectingLogger(logs), ...options });
    return m;
  }

  afterEach(async () => {
    await m?.unmount();
    m = undefined;
    rmSync(base, { recursive: true, force: true });
  });

  it("lets the kernel read and mmap a PassthroughFs file itself; O_DIRECT reads still reach the backend", async () => {
    const mounted = await mountHost();
    expect(mounted.connection.flags).toContain("PASSTHROUGH");
    const out = await ok(`set -e; cd ${mnt}
      head -c 4194304 /dev/urandom > data
      sha256sum < data
      cp data copy
      sha256sum < copy
      python3 -c 'import mmap; f = open("copy", "r+b"); m = mmap.mmap(f.fileno(), 0); m[0:5] = b"hello"; m.flush(); print(open("copy", "rb").read(5).decode())'`);
    const [sum, copySum, mapped] = out.trim().split("\n");
    expect(copySum).toBe(sum);
    expect(mapped).toBe("hello");
    expect(readFileSync(join(host, "copy")).subarray(0, 5).toString()).toBe("hello");
    expect((await ok(`sha256sum < ${join(host, "data")}`)).trim()).toBe(sum);
    expect(fs.reads).toBe(0);
    expect(fs.writes).toBeGreaterThan(0);
    // O_DIRECT reads are the backend's to answer, as without passthrough.
    expect((await ok(`dd if=${join(mnt, "data")} bs=64k iflag=direct status=none | sha256sum`)).trim()).toBe(sum);
    expect(fs.reads).toBeGreaterThan(0);
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("keeps serving an open file after unlink, and sees a truncate made through another handle", async () => {
    await mountHost();
    const out = await python(`
import os
os.chdir(${JSON.stringify(mnt)})
f = os.open("gone", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"x" * 65536)
os.unlink("gone")
os.pwrite(f, b"after unlink", 0)
print(os.pread(f, 12, 0).decode(), os.fstat(f).st_size)
g = os.open("cut", os.O_RDWR | os.O_CREAT, 0o644)
os.write(g, b"y" * 65536)
h = os.open("cut", os.O_WRONLY)
os.ftruncate(h, 100)
print(len(os.pread(g, 65536, 0)), os.fstat(g).st_size)
os.truncate("cut", 10)
print(len(os.pread(g, 65536, 0)))
`);
    expect(out.trim().split("\n")).toEqual(["after unlink 65536", "100 100", "10"]);
  });

  it("writes through an open file reach its inode only, whatever becomes of its name on the host", async () => {
    await mountHost();
    const outside = join(base, "outside");
    writeFileSync(outside, "untouched");
    const out = await python(`
import os
os.chdir(${JSON.stringify(mnt)})
f = os.open("file", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"inside")
# On the host, the name now leads out of the root.
os.rename(${JSON.stringify(join(host, "file"))}, ${JSON.stringify(join(host, "moved"))})
os.symlink(${JSON.stringify(outside)}, ${JSON.stringify(join(host, "file"))})
os.pwrite(f, b"INSIDE", 0)
os.close(f)
# A new open of the name reaches the same inode (its dentry is cached) or
# nothing (ELOOP: the backend never follows a host symlink), never the outside.
try:
    g = os.open("file", os.O_RDWR | os.O_APPEND)
    os.write(g, b"+")
    os.close(g)
except OSError as e:
    print(e.errno)
`);
    expect(["", "40"]).toContain(out.trim());
    expect(readFileSync(outside, "utf8")).toBe("untouched");
    expect(readFileSync(join(host, "moved"), "utf8")).toMatch(/^INSIDE\+?$/);
  });

  it("sends writes to the backend, which clears suid/sgid as a write must", async () => {
    await mountHost();
    await ok(`set -e; cd ${mnt}; echo a > s; chmod 4777 s`);
    const writes = fs.writes;
    const mode = await ok(`set -e; cd ${mnt}; echo b >> s; stat -c %a s; cat s`, USER);
    expect(mode.trim().split("\n")).toEqual(["777", "a", "b"]);
    expect(fs.writes).toBe(writes + 1);
    expect(fs.reads).toBe(0);
  });

  it("serves reads through the backend with a quota, and when turned off", async () => {
    await mountHost({ quota: "64MiB" });
    await ok(`cd ${mnt} && echo quota > q && cat q`);
    expect(fs.reads).toBeGreaterThan(0);
    await m!.unmount();
    rmSync(base, { recursive: true, force: true });

    await mountHost({}, { passthrough: false });
    expect(m!.connection.flags).not.toContain("PASSTHROUGH");
    await ok(`cd ${mnt} && echo off > o && cat o`);
    expect(fs.reads).toBeGreaterThan(0);
  });
});
