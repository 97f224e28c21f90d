import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PathFs, S, type DynFileSystem } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { describe, expect, it } from "vitest";
import { SandboxError } from "./errors.js";
import { sandboxError, scratchDirs } from "./scratch.fixture.js";
import { PatchBuilder, SCRIPTS_DIR, applyPatches, scriptPatches, type PatchOp } from "./patch.js";

const scratch = scratchDirs("msb-patch-");

const MiB = 1024 * 1024;
const perms = (mode: number): number => mode & S.IALLUGO;
const sha = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");


/** Applies the builder's ops to `fs` and returns a PathFs over it. */
async function patched(fs: DynFileSystem, build: (p: PatchBuilder) => PatchBuilder): Promise<PathFs> {
  await applyPatches(fs, build(new PatchBuilder()).ops);
  return new PathFs(fs);
}

/** Names in `dir` that are patch temporaries. */
async function temporaries(files: PathFs, dir: string): Promise<string[]> {
  return (await files.readdir(dir)).map((e) => e.name).filter((name) => name.startsWith(".msb-patch-"));
}

describe("PatchBuilder", () => {
  it("records plain, typed operations in order", () => {
    const ops = new PatchBuilder()
      .text("/etc/motd", "hi", { mode: 0o600 })
      .file("/opt/a", "/src/a")
      .copyFile("/src/b", "/opt/b", { replace: true })
      .copyDir("/src/d", "/opt/d")
      .symlink("../a", "/opt/link")
      .mkdir("/var/x")
      .remove("/etc/cron.d")
      .append("/etc/hosts", "10.0.0.1 box\n").ops;
    expect(ops).toEqual<PatchOp[]>([
      { kind: "text", path: "/etc/motd", content: "hi", mode: 0o600, replace: false },
      { kind: "copyFile", path: "/opt/a", hostPath: "/src/a", mode: 0o644, replace: false },
      { kind: "copyFile", path: "/opt/b", hostPath: "/src/b", mode: undefined, replace: true },
      { kind: "copyDir", path: "/opt/d", hostPath: "/src/d", replace: false },
      { kind: "symlink", path: "/opt/link", target: "../a", replace: false },
      { kind: "mkdir", path: "/var/x", mode: 0o755 },
      { kind: "remove", path: "/etc/cron.d" },
      { kind: "append", path: "/etc/hosts", content: "10.0.0.1 box\n" },
    ]);
    expect(Object.isFrozen(ops[0])).toBe(true);
  });

  it("resolves relative host paths when recorded", () => {
    const [op] = new PatchBuilder().copyFile("rel/file", "/f").ops;
    expect(op).toMatchObject({ hostPath: join(process.cwd(), "rel/file") });
  });

  it.each(["etc/motd", "/", "/etc/../motd", "/etc/./motd", "/etc//motd", "/etc/", "/a\0b", `/${"x".repeat(256)}`])(
    "refuses the guest path %j",
    async (path) => {
      const error = await sandboxError(() => new PatchBuilder().text(path, "x"));
      expect(error.code).toBe("ERR_MSB_INVALID_CONFIG");
      expect(error.input).toBe(path);
    },
  );

  it("refuses bad modes, options, targets and host paths", async () => {
    for (const run of [
      () => new PatchBuilder().text("/a", "x", { mode: 0o10000 }),
      () => new PatchBuilder().mkdir("/a", -1),
      () => new PatchBuilder().mkdir("/a", 1.5),
      () => new PatchBuilder().text("/a", "x", { replace: "yes" as unknown as boolean }),
      () => new PatchBuilder().text("/a", 42 as unknown as string),
      () => new PatchBuilder().symlink("", "/a"),
      () => new PatchBuilder().symlink("x\0y", "/a"),
      () => new PatchBuilder().copyFile("", "/a"),
      () => new PatchBuilder().copyDir("/x\0", "/a"),
    ]) {
      const error = await sandboxError(run);
      expect(error.code).toBe("ERR_MSB_INVALID_CONFIG");
      expect(error.input).toBe("/a");
    }
  });

  it("assertSupported refuses patches on a disk-image root only", async () => {
    const patches = new PatchBuilder().text("/a", "x");
    expect((await sandboxError(() => patches.assertSupported("disk"))).code).toBe("ERR_MSB_INVALID_CONFIG");
    expect(() => patches.assertSupported("image")).not.toThrow();
    expect(() => new PatchBuilder().assertSupported("disk")).not.toThrow();
  });
});

describe("applyPatches: text, file, copyFile", () => {
  it("text creates missing parents (0755) and a root-owned 0644 file", async () => {
    const files = await patched(new MemFs(), (p) => p.text("/etc/app/conf.d/main.conf", "key=1\n"));
    expect(await files.readFile("/etc/app/conf.d/main.conf", "utf8")).toBe("key=1\n");
    const attr = await files.stat("/etc/app/conf.d/main.conf");
    expect([perms(attr.mode), attr.uid, attr.gid]).toEqual([0o644, 0, 0]);
    for (const dir of ["/etc", "/etc/app", "/etc/app/conf.d"]) expect(perms((await files.stat(dir)).mode)).toBe(0o755);
  });

  it("gives exactly the mode asked for, setuid included, and gid 0 even in a setgid directory", async () => {
    const fs = new MemFs();
    const files = new PathFs(fs);
    await files.mkdir("/usr/local/bin", { recursive: true });
    await files.chown("/usr/local", 0, 50);
    await files.chmod("/usr/local", 0o2775);
    await applyPatches(fs, new PatchBuilder().text("/usr/local/bin/tool", "#!/bin/sh\n", { mode: 0o4755 }).mkdir("/usr/local/share", 0o750).ops);
    const tool = await files.stat("/usr/local/bin/tool");
    expect([perms(tool.mode), tool.uid, tool.gid]).toEqual([0o4755, 0, 0]);
    const share = await files.stat("/usr/local/share");
    expect([perms(share.mode), share.gid]).toEqual([0o750, 0]);
  });

  it("fails on an existing path unless replace, naming the guest path", async () => {
    const fs = new MemFs();
    await applyPatches(fs, new PatchBuilder().text("/etc/motd", "old").ops);
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().text("/etc/motd", "new").ops));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/etc/motd", "EEXIST"]);
    await applyPatches(fs, new PatchBuilder().text("/etc/motd", "new", { replace: true, mode: 0o600 }).ops);
    const files = new PathFs(fs);
    expect(await files.readFile("/etc/motd", "utf8")).toBe("new");
    expect(perms((await files.stat("/etc/motd")).mode)).toBe(0o600);
    expect(await temporaries(files, "/etc")).toEqual([]);
  });

  it("replace overwrites a directory and a symlink itself (not its target)", async () => {
    const fs = new MemFs();
    const files = new PathFs(fs);
    await files.mkdir("/srv/dir/sub", { recursive: true });
    await files.writeFile("/srv/target", "kept");
    await files.symlink("target", "/srv/link");
    await applyPatches(fs, new PatchBuilder().text("/srv/dir", "was a dir", { replace: true }).text("/srv/link", "was a link", { replace: true }).ops);
    expect(await files.readFile("/srv/dir", "utf8")).toBe("was a dir");
    expect(await files.readFile("/srv/link", "utf8")).toBe("was a link");
    expect(await files.readFile("/srv/target", "utf8")).toBe("kept");
  });

  it("file copies a host file as 0644; copyFile keeps the host mode unless given", async () => {
    const dir = scratch();
    writeFileSync(join(dir, "tool"), "binary");
    chmodSync(join(dir, "tool"), 0o750);
    const files = await patched(new MemFs(), (p) =>
      p
        .file("/opt/file", join(dir, "tool"))
        .copyFile(join(dir, "tool"), "/opt/kept")
        .copyFile(join(dir, "tool"), "/opt/given", { mode: 0o700 }),
    );
    for (const [path, mode] of [["/opt/file", 0o644], ["/opt/kept", 0o750], ["/opt/given", 0o700]] as const) {
      expect(await files.readFile(path, "utf8")).toBe("binary");
      const attr = await files.stat(path);
      expect([perms(attr.mode), attr.uid, attr.gid]).toEqual([mode, 0, 0]);
    }
  });

  it("copies a 5 MiB host file intact, through an overlay onto a host-directory upper", async () => {
    const data = randomBytes(5 * MiB + 123);
    const source = join(scratch(), "big.bin");
    writeFileSync(source, data);
    const upperDir = scratch();
    const lower = new MemFs();
    const upper = new PassthroughFs({ rootDir: upperDir });
    const overlay = new OverlayFs({ lowers: [lower], upper });
    await overlay.init();
    try {
      const files = await patched(overlay, (p) => p.copyFile(source, "/data/big.bin"));
      const copied = await files.readFile("/data/big.bin");
      expect(copied.length).toBe(data.length);
      expect(sha(copied)).toBe(sha(data));
      expect(await new PathFs(upper).exists("/data/big.bin")).toBe(true);
    } finally {
      await overlay.destroy();
    }
  });

  it("reports a missing or non-regular host file with the guest path and the cause", async () => {
    const dir = scratch();
    const missing = await sandboxError(() => applyPatches(new MemFs(), new PatchBuilder().file("/a", join(dir, "nope")).ops));
    expect([missing.code, missing.input, missing.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/a", "ENOENT"]);
    expect(missing.cause).toBeInstanceOf(Error);
    const notFile = await sandboxError(() => applyPatches(new MemFs(), new PatchBuilder().copyFile(dir, "/b").ops));
    expect([notFile.code, notFile.input]).toEqual(["ERR_MSB_PATCH_FAILED", "/b"]);
  });
});

describe("applyPatches: atomicity", () => {
  it("a text write that runs out of space leaves no destination and no temporary", async () => {
    const fs = new MemFs({ capacity: 256 * 1024 });
    const files = new PathFs(fs);
    await files.mkdir("/etc");
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().text("/etc/big", new Uint8Array(MiB).fill(7)).ops));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/etc/big", "ENOSPC"]);
    expect(await files.exists("/etc/big")).toBe(false);
    expect(await temporaries(files, "/etc")).toEqual([]);
  });

  it("a failed replace keeps the old file", async () => {
    const fs = new MemFs({ capacity: 256 * 1024 });
    const files = new PathFs(fs);
    await applyPatches(fs, new PatchBuilder().text("/etc/conf", "old").ops);
    await expect(applyPatches(fs, new PatchBuilder().text("/etc/conf", new Uint8Array(MiB), { replace: true }).ops)).rejects.toThrow(/ENOSPC/);
    expect(await files.readFile("/etc/conf", "utf8")).toBe("old");
    expect(await temporaries(files, "/etc")).toEqual([]);
  });

  it("a host file copy that runs out of space leaves nothing behind", async () => {
    const source = join(scratch(), "big");
    writeFileSync(source, randomBytes(3 * MiB));
    const fs = new MemFs({ capacity: 2 * MiB });
    const files = new PathFs(fs);
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().copyFile(source, "/big").ops));
    expect(error.errno).toBe("ENOSPC");
    expect(await files.exists("/big")).toBe(false);
    expect(await temporaries(files, "/")).toEqual([]);
  });

  it("a failed append is cut back to the old content", async () => {
    const fs = new MemFs({ capacity: 256 * 1024 });
    const files = new PathFs(fs);
    await files.writeFile("/log", "line 1\n");
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().append("/log", new Uint8Array(MiB)).ops));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/log", "ENOSPC"]);
    expect(await files.readFile("/log", "utf8")).toBe("line 1\n");
  });

  it("stops at the first failing operation", async () => {
    const fs = new MemFs();
    await new PathFs(fs).writeFile("/taken", "x");
    await expect(applyPatches(fs, new PatchBuilder().text("/first", "1").text("/taken", "2").text("/third", "3").ops)).rejects.toThrow(SandboxError);
    const files = new PathFs(fs);
    expect([await files.exists("/first"), await files.exists("/third")]).toEqual([true, false]);
  });
});

describe("applyPatches: copyDir", () => {
  function hostTree(): string {
    const dir = scratch();
    mkdirSync(join(dir, "bin"));
    mkdirSync(join(dir, "share/doc"), { recursive: true });
    writeFileSync(join(dir, "bin/run"), "#!/bin/sh\n");
    chmodSync(join(dir, "bin/run"), 0o755);
    writeFileSync(join(dir, "share/doc/README"), "read me");
    chmodSync(join(dir, "share/doc/README"), 0o600);
    chmodSync(join(dir, "share/doc"), 0o750);
    symlinkSync("bin/run", join(dir, "run"));
    symlinkSync("/nonexistent/absolute", join(dir, "dangling"));
    // A name that is not UTF-8 must arrive byte for byte.
    writeFileSync(Buffer.concat([Buffer.from(`${dir}/raw-`), Buffer.from([0xff, 0xfe])]), "raw");
    return dir;
  }

  it("copies nested directories, files, symlinks and modes, all root-owned", async () => {
    const fs = new MemFs();
    const files = await patched(fs, (p) => p.copyDir(hostTree(), "/opt/tool"));
    expect(await files.readFile("/opt/tool/bin/run", "utf8")).toBe("#!/bin/sh\n");
    expect(perms((await files.stat("/opt/tool/bin/run")).mode)).toBe(0o755);
    expect(await files.readFile("/opt/tool/share/doc/README", "utf8")).toBe("read me");
    expect(perms((await files.stat("/opt/tool/share/doc/README")).mode)).toBe(0o600);
    expect(perms((await files.stat("/opt/tool/share/doc")).mode)).toBe(0o750);
    expect(await files.readlink("/opt/tool/run")).toBe("bin/run");
    expect(await files.readFile("/opt/tool/run", "utf8")).toBe("#!/bin/sh\n");
    expect(await files.readlink("/opt/tool/dangling")).toBe("/nonexistent/absolute");
    const raw = new Uint8Array([...Buffer.from("/opt/tool/raw-"), 0xff, 0xfe]);
    expect(await files.readFile(raw, "utf8")).toBe("raw");
    for await (const entry of files.walk("/opt/tool")) expect([entry.path, entry.attr.uid, entry.attr.gid]).toEqual([entry.path, 0, 0]);
    expect(await temporaries(files, "/opt")).toEqual([]);
  });

  it("fails on an existing destination unless replace, which swaps the whole tree", async () => {
    const fs = new MemFs();
    const files = new PathFs(fs);
    await files.mkdir("/opt/tool/old", { recursive: true });
    const tree = hostTree();
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().copyDir(tree, "/opt/tool").ops));
    expect([error.code, error.input]).toEqual(["ERR_MSB_PATCH_FAILED", "/opt/tool"]);
    await applyPatches(fs, new PatchBuilder().copyDir(tree, "/opt/tool", { replace: true }).ops);
    expect(await files.exists("/opt/tool/old")).toBe(false);
    expect(await files.exists("/opt/tool/bin/run")).toBe(true);
  });

  it("refuses special files and leaves no partial tree", async () => {
    const dir = hostTree();
    execFileSync("mkfifo", [join(dir, "share/pipe")]);
    const fs = new MemFs();
    const files = new PathFs(fs);
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().copyDir(dir, "/opt/tool").ops));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/opt/tool", "EINVAL"]);
    expect(await files.exists("/opt/tool")).toBe(false);
    expect(await temporaries(files, "/opt")).toEqual([]);
  });
});

describe("applyPatches: symlink, mkdir, remove, append", () => {
  it("symlink creates a link, fails on an existing path unless replace", async () => {
    const fs = new MemFs();
    const files = await patched(fs, (p) => p.symlink("/usr/bin/python3", "/usr/local/bin/python"));
    expect(await files.readlink("/usr/local/bin/python")).toBe("/usr/bin/python3");
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().symlink("x", "/usr/local/bin/python").ops));
    expect([error.code, error.input]).toEqual(["ERR_MSB_PATCH_FAILED", "/usr/local/bin/python"]);
    await applyPatches(fs, new PatchBuilder().symlink("/usr/bin/python3.12", "/usr/local/bin/python", { replace: true }).ops);
    expect(await files.readlink("/usr/local/bin/python")).toBe("/usr/bin/python3.12");
  });

  it("mkdir makes parents, is idempotent, and leaves an existing directory as it is", async () => {
    const fs = new MemFs();
    const files = await patched(fs, (p) => p.mkdir("/var/lib/app", 0o700).mkdir("/var/lib/app", 0o777));
    expect(perms((await files.stat("/var/lib/app")).mode)).toBe(0o700);
    expect(perms((await files.stat("/var/lib")).mode)).toBe(0o755);
    await files.symlink("/var/lib/app", "/app");
    await applyPatches(fs, new PatchBuilder().mkdir("/app").mkdir("/app/cache").ops);
    expect(await files.exists("/var/lib/app/cache")).toBe(true);
  });

  it("mkdir over a file fails", async () => {
    const fs = new MemFs();
    await new PathFs(fs).writeFile("/etc", "not a dir");
    const error = await sandboxError(() => applyPatches(fs, new PatchBuilder().mkdir("/etc/app").ops));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/etc/app", "ENOTDIR"]);
  });

  it("remove deletes a tree, a file or a symlink (not its target), and a missing path is fine", async () => {
    const fs = new MemFs();
    const files = new PathFs(fs);
    await files.mkdir("/srv/a/b/c", { recursive: true });
    await files.writeFile("/srv/a/b/c/f", "x");
    await files.writeFile("/keep", "kept");
    await files.symlink("/keep", "/link");
    await applyPatches(fs, new PatchBuilder().remove("/srv/a").remove("/link").remove("/srv/a").remove("/no/such/dir").ops);
    expect(await files.exists("/srv/a")).toBe(false);
    expect(await files.exists("/link")).toBe(false);
    expect(await files.readFile("/keep", "utf8")).toBe("kept");
    expect(await files.exists("/srv")).toBe(true);
  });

  it("remove and replace on an overlay hide and shadow lower files", async () => {
    const lower = new MemFs();
    const lowerFiles = new PathFs(lower);
    await lowerFiles.mkdir("/etc/cron.d", { recursive: true });
    await lowerFiles.writeFile("/etc/cron.d/job", "* * * * * x");
    await lowerFiles.writeFile("/etc/motd", "image motd");
    const upper = new MemFs();
    const overlay = new OverlayFs({ lowers: [lower], upper });
    await overlay.init();
    const files = await patched(overlay, (p) => p.remove("/etc/cron.d").text("/etc/motd", "patched", { replace: true }).append("/etc/motd", "+"));
    expect(await files.exists("/etc/cron.d")).toBe(false);
    expect(await files.readFile("/etc/motd", "utf8")).toBe("patched+");
    expect(await lowerFiles.readFile("/etc/motd", "utf8")).toBe("image motd");
    expect(await new PathFs(upper).exists("/etc/.wh.cron.d")).toBe(true);
  });

  it("append adds to a file, or creates it (0644) and its parents", async () => {
    const fs = new MemFs();
    const files = new PathFs(fs);
    await files.mkdir("/etc");
    await files.writeFile("/etc/hosts", "127.0.0.1 localhost\n", { mode: 0o600 });
    await applyPatches(fs, new PatchBuilder().append("/etc/hosts", "10.0.0.2 db\n").append("/etc/new/list", "a\n").append("/etc/new/list", "b\n").ops);
    expect(await files.readFile("/etc/hosts", "utf8")).toBe("127.0.0.1 localhost\n10.0.0.2 db\n");
    expect(perms((await files.stat("/etc/hosts")).mode)).toBe(0o600);
    expect(await files.readFile("/etc/new/list", "utf8")).toBe("a\nb\n");
    expect(perms((await files.stat("/etc/new/list")).mode)).toBe(0o644);
  });

  it("append to a directory fails", async () => {
    const error = await sandboxError(() => patched(new MemFs(), (p) => p.mkdir("/d").append("/d", "x")));
    expect([error.code, error.input, error.errno]).toEqual(["ERR_MSB_PATCH_FAILED", "/d", "EISDIR"]);
  });

  it("writes through PassthroughFs as root-owned entries while the host files stay the user's", async () => {
    const dir = scratch();
    const upper = new PassthroughFs({ rootDir: dir });
    try {
      const files = await patched(upper, (p) => p.text("/etc/shadow", "root:*:1::::::\n", { mode: 0o640 }).mkdir("/root", 0o700));
      const shadow = await files.stat("/etc/shadow");
      expect([perms(shadow.mode), shadow.uid, shadow.gid]).toEqual([0o640, 0, 0]);
      expect(perms((await files.stat("/root")).mode)).toBe(0o700);
    } finally {
      upper.destroy();
    }
  });
});

describe("scriptPatches", () => {
  it("installs each script as /.msb/scripts/NAME, mode 0755, replacing older versions", async () => {
    const fs = new MemFs();
    await applyPatches(fs, scriptPatches({ greet: "#!/bin/sh\necho hi\n" }));
    await applyPatches(fs, scriptPatches(new Map([["greet", "#!/bin/sh\necho hello\n"], ["build.sh", "make\n"]])));
    const files = new PathFs(fs);
    expect(await files.readFile(`${SCRIPTS_DIR}/greet`, "utf8")).toBe("#!/bin/sh\necho hello\n");
    const attr = await files.stat(`${SCRIPTS_DIR}/build.sh`);
    expect([perms(attr.mode), attr.uid, attr.gid]).toEqual([0o755, 0, 0]);
    expect(perms((await files.stat("/.msb")).mode)).toBe(0o755);
  });

  it.each(["", ".", "..", "a/b", "a\0b", "x".repeat(256), "ü".repeat(128)])("refuses the name %j", async (name) => {
    const error = await sandboxError(() => scriptPatches({ [name]: "echo" }));
    expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", name]);
  });

  it("accepts a name of exactly NAME_MAX bytes", () => {
    expect(scriptPatches({ ["x".repeat(255)]: "" })).toHaveLength(1);
  });
});
