import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { ACCESS, O, PathFs, ROOT_INO, toBytes, type Context, type DynFileSystem } from "@msb/fs";
import { createScratchDir, expectErrno, populate, type ScratchDir } from "@msb/fs/testing";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterEach, describe, expect, it } from "vitest";
import { DualFs, DUAL_POLICIES, type DualFsOptions, type DualPolicyFunction } from "./index.js";

const ROOT: Context = { uid: 0, gid: 0, pid: 1 };
const names = async (files: PathFs, path: string): Promise<string[]> => (await files.readdir(path)).map((e) => e.name).sort();
const sha = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** The inode of `path`, with its lookups kept (as the kernel holds them while a file is in use). */
async function held(fs: DynFileSystem, path: string): Promise<number> {
  let ino = ROOT_INO;
  for (const part of path.split("/").filter((p) => p !== "")) ino = (await fs.lookup(ROOT, ino, toBytes(part))).ino;
  return ino;
}

async function dual(options: DualFsOptions): Promise<{ fs: DualFs; files: PathFs; a: PathFs; b: PathFs }> {
  const fs = new DualFs(options);
  await fs.init();
  return { fs, files: new PathFs(fs), a: new PathFs(options.backendA), b: new PathFs(options.backendB) };
}

const scratches: ScratchDir[] = [];
afterEach(async () => {
  for (const s of scratches.splice(0)) await s.cleanup();
});

describe("ReadBackendBWriteBackendA (the default)", () => {
  it("reads B's files in place, and a write copies the file to A first, leaving B untouched", async () => {
    const backendB = await populate(new MemFs(), { "/etc/app.conf": "port=80\n", "/etc/motd": "hello\n" });
    const { files, a, b } = await dual({ backendA: new MemFs(), backendB });
    expect(await files.readFile("/etc/app.conf", "utf8")).toBe("port=80\n");
    expect(await a.exists("/etc")).toBe(false);

    await files.chmod("/etc/app.conf", 0o640);
    await files.chown("/etc/app.conf", 1000, 1000);
    await files.utimes("/etc/app.conf", 1_000_000, 2_000_000);
    const before = await files.stat("/etc/app.conf");
    await files.appendFile("/etc/app.conf", "debug=1\n");
    expect(await files.readFile("/etc/app.conf", "utf8")).toBe("port=80\ndebug=1\n");
    expect(await a.readFile("/etc/app.conf", "utf8")).toBe("port=80\ndebug=1\n");
    expect(await b.readFile("/etc/app.conf", "utf8")).toBe("port=80\n");
    const after = await files.stat("/etc/app.conf");
    expect({ ino: after.ino, mode: after.mode, uid: after.uid, gid: after.gid }).toEqual({ ino: before.ino, mode: before.mode, uid: 1000, gid: 1000 });
    // The untouched file is still B's, and the listing merges both.
    expect(await a.exists("/etc/motd")).toBe(false);
    expect(await names(files, "/etc")).toEqual(["app.conf", "motd"]);
  });

  it("copies owner, mode, times and xattrs with the data, and leaves the staging directory empty", async () => {
    const backendB = await populate(new MemFs(), { "/data/blob": "" });
    const big = new Uint8Array(3 * 1024 * 1024 + 12_345).map((_, i) => (i * 7) & 0xff);
    await new PathFs(backendB).writeFile("/data/blob", big);
    const pb = new PathFs(backendB);
    await pb.chown("/data/blob", 42, 43);
    await pb.chmod("/data/blob", 0o604);
    await pb.utimes("/data/blob", 1_500_000_000, 1_600_000_000);
    const blob = await pb.stat("/data/blob");
    backendB.setxattr(ROOT, blob.ino, toBytes("user.origin"), toBytes("b"), 0);
    const { fs, files, a } = await dual({ backendA: new MemFs(), backendB });

    const ino = await held(fs, "/data/blob");
    await fs.setxattr(ROOT, ino, toBytes("user.tag"), toBytes("copied"), 0);
    const copy = await a.stat("/data/blob");
    expect({ uid: copy.uid, gid: copy.gid, mode: copy.mode & 0o7777, mtime: copy.mtime.sec }).toEqual({ uid: 42, gid: 43, mode: 0o604, mtime: 1_600_000_000 });
    expect(sha(await a.readFile("/data/blob"))).toBe(sha(big));
    expect(new TextDecoder().decode(await fs.getxattr(ROOT, ino, toBytes("user.origin")))).toBe("b");
    expect(new TextDecoder().decode(await fs.getxattr(ROOT, ino, toBytes("user.tag")))).toBe("copied");
    expect(await names(a, "/.msb-dual-staging")).toEqual([]);
    expect(await names(files, "/")).toEqual(["data"]);
  });

  it("shows B's version of a name both have until DualFs changes it", async () => {
    const { files, a } = await dual({
      backendA: await populate(new MemFs(), { "/shared": "from A" }),
      backendB: await populate(new MemFs(), { "/shared": "from B" }),
    });
    expect(await files.readFile("/shared", "utf8")).toBe("from B");
    await files.appendFile("/shared", "!");
    expect(await files.readFile("/shared", "utf8")).toBe("from B!");
    // A whiteout in A now hides B's stale copy, whatever the precedence.
    expect(await a.exists("/.msb-wh.shared")).toBe(true);
    expect(await names(files, "/")).toEqual(["shared"]);
  });

  it("removing a B name writes a whiteout in A and never touches B", async () => {
    const backendB = await populate(new MemFs(), { "/dir/x": "x", "/dir/y": "y", "/file": "f" });
    const { files, a, b } = await dual({ backendA: new MemFs(), backendB });
    await files.rm("/file");
    await files.rm("/dir/x");
    expect(await names(files, "/")).toEqual(["dir"]);
    expect(await names(files, "/dir")).toEqual(["y"]);
    expect(await files.exists("/file")).toBe(false);
    expect(await a.exists("/.msb-wh.file")).toBe(true);
    expect(await a.exists("/dir/.msb-wh.x")).toBe(true);
    expect(await b.readFile("/file", "utf8")).toBe("f");
    expect(await b.readFile("/dir/x", "utf8")).toBe("x");
  });

  it("rmdir then mkdir gives an empty directory that hides B's old contents", async () => {
    const backendB = await populate(new MemFs(), { "/cache/old": "1" });
    const { files, b } = await dual({ backendA: new MemFs(), backendB });
    await files.rm("/cache", { recursive: true });
    await files.mkdir("/cache");
    expect(await names(files, "/cache")).toEqual([]);
    await files.writeFile("/cache/new", "2");
    expect(await names(files, "/cache")).toEqual(["new"]);
    expect(await b.readFile("/cache/old", "utf8")).toBe("1");
  });

  it("renames a B directory by copying its tree to A; the old name disappears", async () => {
    const backendB = await populate(new MemFs(), { "/src/a/one": "1", "/src/two": "2" });
    const { files, a, b } = await dual({ backendA: new MemFs(), backendB });
    await files.rename("/src", "/dst");
    expect(await files.exists("/src")).toBe(false);
    expect(await files.readFile("/dst/a/one", "utf8")).toBe("1");
    expect(await files.readFile("/dst/two", "utf8")).toBe("2");
    expect(await a.readFile("/dst/a/one", "utf8")).toBe("1");
    expect(await b.exists("/src/a/one")).toBe(true);
    await files.writeFile("/dst/a/three", "3");
    expect(await names(files, "/dst/a")).toEqual(["one", "three"]);
  });

  it("keeps hard links of B together when one name is written", async () => {
    const backendB = await populate(new MemFs(), { "/one": "linked" });
    await new PathFs(backendB).link("/one", "/two");
    const { files } = await dual({ backendA: new MemFs(), backendB });
    expect((await files.stat("/one")).ino).toBe((await files.stat("/two")).ino);
    await files.appendFile("/one", "!");
    expect(await files.readFile("/two", "utf8")).toBe("linked!");
    expect((await files.stat("/one")).nlink).toBe(2);
  });

  it("answers access as the mode allows for B's objects, since a write copies them", async () => {
    const backendB = await populate(new MemFs(), { "/f": "x" });
    const { fs } = await dual({ backendA: new MemFs(), backendB });
    const ino = await held(fs, "/f");
    await fs.access(ROOT, ino, ACCESS.W_OK);
    await expectErrno(() => fs.access({ uid: 1000, gid: 1000, pid: 1 }, ino, ACCESS.W_OK), "EACCES");
  });
});

describe("the other built-in policies", () => {
  const both = async (): Promise<Pick<DualFsOptions, "backendA" | "backendB">> => ({
    backendA: await populate(new MemFs(), { "/both": "A", "/only-a": "A" }),
    backendB: await populate(new MemFs(), { "/both": "B", "/only-b": "B" }),
  });

  it("BackendAOnly never shows B", async () => {
    const { files, b } = await dual({ ...(await both()), policy: "BackendAOnly" });
    expect(await names(files, "/")).toEqual(["both", "only-a"]);
    expect(await files.exists("/only-b")).toBe(false);
    await files.writeFile("/only-b", "new");
    expect(await files.readFile("/only-b", "utf8")).toBe("new");
    expect(await b.readFile("/only-b", "utf8")).toBe("B");
  });

  it("BackendAFallbackToBackendBRead looks names up in B when A lacks them, but lists only A", async () => {
    const { files } = await dual({ ...(await both()), policy: "BackendAFallbackToBackendBRead" });
    expect(await files.readFile("/both", "utf8")).toBe("A");
    expect(await files.readFile("/only-b", "utf8")).toBe("B");
    expect(await names(files, "/")).toEqual(["both", "only-a"]);
  });

  it("MergeReadsBackendAPrecedence lists both and lets A win", async () => {
    const { files, a } = await dual({ ...(await both()), policy: "MergeReadsBackendAPrecedence" });
    expect(await names(files, "/")).toEqual(["both", "only-a", "only-b"]);
    expect(await files.readFile("/both", "utf8")).toBe("A");
    await files.rm("/both");
    // B's copy must not come back once A's is gone.
    expect(await files.exists("/both")).toBe(false);
    expect(await a.exists("/.msb-wh.both")).toBe(true);
    expect(await names(files, "/")).toEqual(["only-a", "only-b"]);
  });

  it("exposes the built-in policies as functions", () => {
    expect(DUAL_POLICIES.ReadBackendBWriteBackendA("lookup", "/x")).toEqual(["b", "a"]);
    expect(DUAL_POLICIES.BackendAOnly("readdir", "/x")).toEqual(["a"]);
    expect(DUAL_POLICIES.BackendAFallbackToBackendBRead("readdir", "/x")).toEqual(["a"]);
    expect(DUAL_POLICIES.MergeReadsBackendAPrecedence("write", "/x")).toBe("a");
  });
});

describe("user policies", () => {
  // /workspace lives on B (say, a host directory); everything else on A.
  const split: DualPolicyFunction = (kind, path) => {
    const onB = path === "/workspace" || path.startsWith("/workspace/");
    if (kind === "lookup" || kind === "readdir") return onB ? ["b", "a"] : ["a", "b"];
    return onB ? "b" : "a";
  };

  it("routes changes by path, and a name cannot span the two backends (EXDEV)", async () => {
    const backendB = await populate(new MemFs(), { "/workspace/main.c": "int main;\n" });
    const { fs, files, a, b } = await dual({ backendA: new MemFs(), backendB, policy: split });
    await files.writeFile("/workspace/out.o", "obj");
    await files.writeFile("/tmp-file", "tmp");
    expect(await b.readFile("/workspace/out.o", "utf8")).toBe("obj");
    expect(await a.exists("/workspace")).toBe(false);
    expect(await a.readFile("/tmp-file", "utf8")).toBe("tmp");
    expect(await b.exists("/tmp-file")).toBe(false);

    const error = await expectErrno(() => files.rename("/tmp-file", "/workspace/tmp-file"), "EXDEV");
    expect(error.path).toBe("/tmp-file");
    const ws = await held(fs, "/workspace");
    const tmp = await held(fs, "/tmp-file");
    await expectErrno(() => fs.link(ROOT, tmp, ws, toBytes("l")), "EXDEV");
    await files.rename("/workspace/out.o", "/workspace/main.o");
    expect(await names(b, "/workspace")).toEqual(["main.c", "main.o"]);
  });

  it("copies a file from A to B when the policy sends its changes to B", async () => {
    const toB: DualPolicyFunction = (kind) => (kind === "lookup" || kind === "readdir" ? ["a", "b"] : "b");
    const { files, a, b } = await dual({ backendA: await populate(new MemFs(), { "/f": "on A" }), backendB: new MemFs(), policy: toB });
    await files.appendFile("/f", "!");
    expect(await b.readFile("/f", "utf8")).toBe("on A!");
    expect(await a.readFile("/f", "utf8")).toBe("on A");
    expect(await b.exists("/.msb-wh.f")).toBe(true);
    expect(await files.readFile("/f", "utf8")).toBe("on A!");
  });

  it("turns a policy that throws or answers nonsense into EIO naming the path", async () => {
    const throwing: DualPolicyFunction = (kind) => {
      if (kind === "lookup") throw new Error("boom");
      return "a";
    };
    const { fs } = await dual({ backendA: new MemFs(), backendB: new MemFs(), policy: throwing });
    const error = await expectErrno(() => fs.lookup(ROOT, ROOT_INO, toBytes("x")), "EIO");
    expect(error.path).toBe("/x");
    expect((error.cause as Error).message).toBe("boom");

    const nonsense = ((kind: string) => (kind === "lookup" ? ["c"] : "a")) as unknown as DualPolicyFunction;
    const other = await dual({ backendA: new MemFs(), backendB: new MemFs(), policy: nonsense });
    const bad = await expectErrno(() => other.fs.lookup(ROOT, ROOT_INO, toBytes("x")), "EIO");
    expect(bad.message).toContain('["c"]');
  });
});

describe("identity and safety", () => {
  it("never gives two objects the same inode number, though the backends' numbers collide", async () => {
    const { files } = await dual({
      backendA: await populate(new MemFs(), { "/a1": "", "/a2": "" }),
      backendB: await populate(new MemFs(), { "/b1": "", "/b2": "" }),
      policy: "MergeReadsBackendAPrecedence",
    });
    const inos = await Promise.all(["/a1", "/a2", "/b1", "/b2"].map(async (p) => (await files.stat(p)).ino));
    expect(new Set(inos).size).toBe(4);
  });

  it("reserves the whiteout prefix and the staging name", async () => {
    const { fs, files } = await dual({ backendA: new MemFs(), backendB: new MemFs() });
    await expectErrno(() => files.writeFile("/.msb-wh.x", ""), "EINVAL");
    await expectErrno(() => fs.mkdir(ROOT, ROOT_INO, toBytes(".msb-dual-staging"), 0o755, 0), "EPERM");
  });

  it("checks its options", () => {
    const fs = new MemFs();
    expect(() => new DualFs({ backendA: fs, backendB: fs })).toThrow(/different/);
    expect(() => new DualFs({ backendA: fs, backendB: new MemFs(), policy: "Nope" as never })).toThrow(/policy must be/);
    expect(() => new DualFs({ backendA: fs, backendB: new MemFs(), staging: ".msb-wh.s" })).toThrow(/whiteout/);
    expect(() => new DualFs({ backendA: fs, backendB: new MemFs(), cache: "sometimes" as never })).toThrow(/cache/);
    expect(new DualFs({ backendA: fs, backendB: new MemFs(), cache: "always" }).cachePolicy).toBe("always");
  });

  it("moves a read handle opened on B over to the copy once a write copied the file, as overlayfs does", async () => {
    const backendB = await populate(new MemFs(), { "/f": "old" });
    const { fs, files } = await dual({ backendA: new MemFs(), backendB });
    const ino = await held(fs, "/f");
    const reader = await fs.open(ROOT, ino, O.RDONLY);
    await files.writeFile("/f", "new");
    expect(new TextDecoder().decode(await fs.read(ROOT, ino, reader.fh, 10, 0))).toBe("new");
    await fs.release(ROOT, ino, reader.fh, O.RDONLY);
    expect(await files.readFile("/f", "utf8")).toBe("new");
  });

  it("stores its whiteouts as plain files a PassthroughFs backend keeps across restarts", async () => {
    const scratch = await createScratchDir("msb-dual-");
    scratches.push(scratch);
    const aDir = await scratch.subdir("a");
    const backendB = await populate(new MemFs(), { "/gone": "1", "/kept": "2" });
    const first = await dual({ backendA: new PassthroughFs({ rootDir: aDir }), backendB });
    await first.files.rm("/gone");
    await first.files.writeFile("/kept", "changed");
    await first.fs.destroy();
    const second = await dual({ backendA: new PassthroughFs({ rootDir: aDir }), backendB });
    expect(await names(second.files, "/")).toEqual(["kept"]);
    expect(await second.files.readFile("/kept", "utf8")).toBe("changed");
    expect(readdirSync(aDir).sort()).toEqual([".msb-dual-staging", ".msb-wh.gone", ".msb-wh.kept", "kept"]);
  });
});
