// FUSE passthrough on real mounts: PassthroughFs names the host file of
// each open handle, and the kernel reads and writes it itself. Driven from
// child processes, like every mount test.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FOPEN, O, type Context } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs, type PassthroughFsOptions } from "@msb/fs-passthrough";
import { afterEach, describe, expect, it } from "vitest";
import { Bytes, type Reply } from "./client.fixture.js";
import { Harness, collectingLogger, type LogLine } from "./harness.fixture.js";
import { FOPEN_PASSTHROUGH, Op } from "./protocol.js";
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

/** The kernel's side of backing files, as the server sees it: ids handed out, and which are registered now. */
class BackingRegistry {
  readonly registered = new Map<number, number>();
  next = 1;
  refuse: string | undefined;
  open(fd: number): number {
    if (this.refuse !== undefined) throw Object.assign(new Error(`${this.refuse}: refused`), { code: this.refuse });
    this.registered.set(this.next, fd);
    return this.next++;
  }
  close(id: number): void {
    if (!this.registered.delete(id)) throw new Error(`backing id ${id} is not registered`);
  }
}

/** `fuse_open_out` of an OPEN reply (at 0) or a CREATE reply (after the 128-byte entry). */
const openOut = (reply: Reply, at = 0): { fh: number; flags: number; backingId: number } => ({
  fh: Number(reply.view.getBigUint64(at, true)),
  flags: reply.view.getUint32(at + 8, true),
  backingId: reply.view.getInt32(at + 12, true),
});

describe("FuseServer's passthrough bookkeeping", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  function serve(fs: PassthroughFs | MemFs, registry: BackingRegistry): Harness {
    const h = new Harness(fs, { backingFiles: registry });
    expect(h.init().error).toBe(0);
    return h;
  }
  const hostFs = (): PassthroughFs => {
    const dir = mkdtempSync(join(tmpdir(), "msb-fuse-pt-"));
    dirs.push(dir);
    return new PassthroughFs({ rootDir: dir });
  };
  const create = (h: Harness, name: string, flags: number): Reply => h.call(Op.CREATE, new Bytes().u32(flags | O.CREAT).u32(0o100644).u32(0).u32(0).cstr(name));
  const open = (h: Harness, ino: number, flags: number): Reply => h.call(Op.OPEN, new Bytes().u32(flags).u32(0), { nodeid: ino });
  const release = (h: Harness, ino: number, fh: number): Reply => h.call(Op.RELEASE, new Bytes().u64(fh).u32(0).u32(0).u64(0), { nodeid: ino });

  it("registers an inode's host file once for all its opens, writers and O_DIRECT readers going through the backend, and drops it with the last release", () => {
    const registry = new BackingRegistry();
    const h = serve(hostFs(), registry);
    const created = create(h, "f", O.RDWR);
    const ino = Number(created.view.getBigUint64(0, true));
    const writer = openOut(created, 128);
    expect(writer).toMatchObject({ flags: FOPEN_PASSTHROUGH | FOPEN.DIRECT_IO, backingId: 1 });
    const reader = openOut(open(h, ino, O.RDONLY));
    expect(reader).toMatchObject({ flags: FOPEN_PASSTHROUGH, backingId: 1 });
    const direct = openOut(open(h, ino, O.RDONLY | O.DIRECT));
    expect(direct).toMatchObject({ flags: FOPEN_PASSTHROUGH | FOPEN.DIRECT_IO, backingId: 1 });
    expect([...registry.registered.keys()]).toEqual([1]);
    for (const fh of [writer.fh, reader.fh]) expect(release(h, ino, fh).error).toBe(0);
    expect(registry.registered.size).toBe(1);
    expect(release(h, ino, direct.fh).error).toBe(0);
    expect(registry.registered.size).toBe(0);
    // A later open registers anew.
    expect(openOut(open(h, ino, O.RDONLY))).toMatchObject({ flags: FOPEN_PASSTHROUGH, backingId: 2 });
    expect(h.logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("opens a write-only handle with FOPEN_DIRECT_IO and no backing file, unless the inode is open with passthrough already", () => {
    const registry = new BackingRegistry();
    const h = serve(hostFs(), registry);
    const created = create(h, "f", O.WRONLY);
    const ino = Number(created.view.getBigUint64(0, true));
    const writer = openOut(created, 128);
    expect(writer).toMatchObject({ flags: FOPEN.DIRECT_IO, backingId: 0 });
    expect(registry.next).toBe(1);
    // The write-only handle takes no inode I/O mode: a reader still gets passthrough,
    const reader = openOut(open(h, ino, O.RDONLY));
    expect(reader).toMatchObject({ flags: FOPEN_PASSTHROUGH, backingId: 1 });
    // and with that open, every later open must name the same backing file, writers too.
    const second = openOut(open(h, ino, O.WRONLY));
    expect(second).toMatchObject({ flags: FOPEN_PASSTHROUGH | FOPEN.DIRECT_IO, backingId: 1 });
    for (const fh of [writer.fh, reader.fh]) expect(release(h, ino, fh).error).toBe(0);
    expect(registry.registered.size).toBe(1);
    expect(release(h, ino, second.fh).error).toBe(0);
    expect(registry.registered.size).toBe(0);
    expect(h.logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("keeps an inode opened without passthrough so until its last release", () => {
    const registry = new BackingRegistry();
    let named = false;
    class Sometimes extends PassthroughFs {
      override passthroughFd(ino: number, fh: number): number | undefined {
        return named ? super.passthroughFd(ino, fh) : undefined;
      }
    }
    const dir = mkdtempSync(join(tmpdir(), "msb-fuse-pt-"));
    dirs.push(dir);
    const h = serve(new Sometimes({ rootDir: dir }), registry);
    const created = create(h, "f", O.RDWR);
    const ino = Number(created.view.getBigUint64(0, true));
    const plain = openOut(created, 128);
    expect(plain).toMatchObject({ flags: 0, backingId: 0 });
    named = true;
    // The kernel would refuse a passthrough open next to a cached one.
    expect(openOut(open(h, ino, O.RDONLY))).toMatchObject({ flags: 0, backingId: 0 });
    expect(registry.registered.size).toBe(0);
  });

  it("serves through the backend when the backend names no host file or registering is refused", () => {
    const registry = new BackingRegistry();
    const memfs = serve(new MemFs(), registry);
    expect(openOut(create(memfs, "m", O.RDWR), 128)).toMatchObject({ backingId: 0 });
    expect(registry.next).toBe(1);

    registry.refuse = "EPERM";
    const h = serve(hostFs(), registry);
    expect(openOut(create(h, "a", O.RDWR), 128)).toMatchObject({ backingId: 0 });
    // EPERM (no CAP_SYS_ADMIN) turns passthrough off for the connection: no second attempt, one log line.
    expect(openOut(create(h, "b", O.RDWR), 128)).toMatchObject({ backingId: 0 });
    expect(h.logs.filter((l) => l.level === "error").map((l) => l.message)).toEqual([expect.stringMatching(/passthrough failed.*EPERM/)]);
  });
});

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
