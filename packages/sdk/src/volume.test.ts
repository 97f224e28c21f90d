import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FsError, PathFs } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";
import { describe, expect, it } from "vitest";
import { sandboxError, scratchDirs } from "./scratch.fixture.js";
import { VolumeBuilder, parseTmpfsFlag, parseVolumeFlag, volumeBackend, volumeSpec, type DiskFsType, type VolumeSpec } from "./volume.js";

const scratch = scratchDirs("msb-volume-");

const MiB = 1024 * 1024;


async function fsErrorCode(run: () => Promise<unknown>): Promise<string> {
  try {
    await run();
  } catch (error) {
    if (FsError.isInstance(error)) return error.code;
    throw error;
  }
  throw new Error("expected an FsError");
}

/** The backend of `spec`, cleaned up after `use`. */
async function withBackend<T>(spec: VolumeSpec, home: string, use: (files: PathFs) => Promise<T>): Promise<T> {
  const backend = await volumeBackend(spec, { home });
  if (backend.fs === undefined) throw new Error(`no filesystem for a ${spec.kind} volume`);
  try {
    return await use(new PathFs(backend.fs));
  } finally {
    await backend.cleanup();
  }
}

describe("VolumeBuilder", () => {
  it("builds one spec per kind", () => {
    const fs = new MemFs();
    const xor = (data: Uint8Array): Uint8Array => data;
    expect(volumeSpec("/data", (v) => v.named("cache.v1").quota("1GiB"))).toEqual({
      kind: "named", guestPath: "/data", name: "cache.v1", quota: 2 ** 30, readonly: false, hooks: undefined,
    });
    expect(volumeSpec("/src", (v) => v.bind("/srv/src").readonly().onRead(xor))).toEqual({
      kind: "bind", guestPath: "/src", hostPath: "/srv/src", quota: undefined, readonly: true, hooks: { onRead: xor },
    });
    expect(volumeSpec("/tmp", (v) => v.tmpfs("64MiB"))).toEqual({ kind: "tmpfs", guestPath: "/tmp", size: 64 * MiB, readonly: false });
    expect(volumeSpec("/tmp", (v) => v.tmpfs())).toEqual({ kind: "tmpfs", guestPath: "/tmp", size: undefined, readonly: false });
    expect(volumeSpec("/mem", (v) => v.memfs(4096))).toEqual({ kind: "memfs", guestPath: "/mem", capacity: 4096, readonly: false });
    expect(volumeSpec("/disk", (v) => v.disk("/img/data.ext4", "ext4").readonly())).toEqual({
      kind: "disk", guestPath: "/disk", imagePath: "/img/data.ext4", fstype: "ext4", readonly: true,
    });
    expect(volumeSpec("/custom", (v) => v.backend(fs))).toEqual({ kind: "backend", guestPath: "/custom", fs, readonly: false });
  });

  it("resolves a relative host path when recorded", () => {
    expect(volumeSpec("/src", (v) => v.bind("project"))).toMatchObject({ hostPath: join(process.cwd(), "project") });
  });

  it.each(["data", "/", "/data/", "/a/../b", "/a/./b", "/a//b", "/a\0"])("refuses the guest path %j", async (path) => {
    const error = await sandboxError(() => new VolumeBuilder(path));
    expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", path]);
  });

  it.each(["-cache", ".cache", "a/b", "a:b", "", "x".repeat(129), "über"])("refuses the volume name %j", async (name) => {
    const error = await sandboxError(() => new VolumeBuilder("/data").named(name));
    expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", name]);
  });

  it("accepts a name of 128 characters", () => {
    expect(volumeSpec("/d", (v) => v.named(`a${"b".repeat(127)}`))).toMatchObject({ kind: "named" });
  });

  it.each<[string, (v: VolumeBuilder) => VolumeBuilder, string]>([
    ["a bad size", (v) => v.tmpfs("lots"), "lots"],
    ["a negative size", (v) => v.memfs(-1), "-1"],
    ["a fractional size", (v) => v.quota(1.5), "1.5"],
    ["an unknown fstype", (v) => v.disk("/img", "ntfs" as DiskFsType), "ntfs"],
    ["an empty bind path", (v) => v.bind(""), ""],
    ["no kind", (v) => v, "/data"],
    ["two kinds", (v) => v.named("a").tmpfs(), "/data"],
    ["a quota on a tmpfs", (v) => v.tmpfs("1MiB").quota(1), "/data"],
    ["a quota on a backend", (v) => v.backend(new MemFs()).quota(1), "/data"],
    ["a read-only tmpfs", (v) => v.tmpfs().readonly(), "/data"],
    ["a read-only memfs", (v) => v.memfs().readonly(), "/data"],
    ["a quota on a read-only volume", (v) => v.named("a").readonly().quota("1GiB"), "/data"],
    ["hooks on a memfs", (v) => v.memfs().onWrite((d) => d), "/data"],
    ["hooks on a disk", (v) => v.disk("/img", "vfat").onRead((d) => d), "/data"],
    ["a backend that is no filesystem", (v) => v.backend({} as MemFs), "/data"],
  ])("refuses %s", async (_what, configure, input) => {
    const error = await sandboxError(() => volumeSpec("/data", configure));
    expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", input]);
  });
});

describe("parseVolumeFlag and parseTmpfsFlag", () => {
  it("reads named volumes and bind mounts, read-only or not", () => {
    expect(parseVolumeFlag("cache:/root/.cache")).toMatchObject({ kind: "named", name: "cache", guestPath: "/root/.cache", readonly: false });
    expect(parseVolumeFlag("cache:/root/.cache:ro")).toMatchObject({ kind: "named", readonly: true });
    expect(parseVolumeFlag("/srv/data:/data:ro")).toMatchObject({ kind: "bind", hostPath: "/srv/data", guestPath: "/data", readonly: true });
    expect(parseVolumeFlag("/srv/data:/data:rw")).toMatchObject({ kind: "bind", readonly: false });
    expect(parseVolumeFlag("./site:/var/www")).toMatchObject({ kind: "bind", hostPath: join(process.cwd(), "site") });
    expect(parseVolumeFlag("../up:/up")).toMatchObject({ kind: "bind", hostPath: join(process.cwd(), "..", "up") });
  });

  it.each(["cache", "cache:", ":/data", "cache:/data:rx", "a:/b:ro:x", "cache:data", "bad name:/data", "/srv:/", "cache:/a/../b"])(
    "refuses -v %j, naming the whole flag",
    async (flag) => {
      const error = await sandboxError(() => parseVolumeFlag(flag));
      expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", flag]);
    },
  );

  it("reads --tmpfs with and without a size", () => {
    expect(parseTmpfsFlag("/tmp")).toEqual({ kind: "tmpfs", guestPath: "/tmp", size: undefined, readonly: false });
    expect(parseTmpfsFlag("/tmp:512MiB")).toMatchObject({ size: 512 * MiB });
    expect(parseTmpfsFlag("/run:size=64m")).toMatchObject({ guestPath: "/run", size: 64 * MiB });
  });

  it.each(["tmp", "/tmp:lots", "/tmp:", "/", "/tmp:1:2"])("refuses --tmpfs %j, naming the whole flag", async (flag) => {
    const error = await sandboxError(() => parseTmpfsFlag(flag));
    expect([error.code, error.input]).toEqual(["ERR_MSB_INVALID_CONFIG", flag]);
  });
});

describe("volumeBackend", () => {
  it("creates a named volume under the home (mode 0700) on first use and keeps it", async () => {
    const home = scratch();
    const spec = parseVolumeFlag("notes:/notes");
    await withBackend(spec, home, (files) => files.writeFile("/todo.txt", "ship it"));
    const dir = join(home, "volumes", "notes");
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readFileSync(join(dir, "todo.txt"), "utf8")).toBe("ship it");
    expect(await withBackend(spec, home, (files) => files.readFile("/todo.txt", "utf8"))).toBe("ship it");
  });

  it("enforces a named volume's quota with ENOSPC", async () => {
    const spec = volumeSpec("/data", (v) => v.named("small").quota("256KiB"));
    const code = await withBackend(spec, scratch(), (files) => fsErrorCode(() => files.writeFile("/big", new Uint8Array(MiB).fill(1))));
    expect(code).toBe("ENOSPC");
  });

  it("serves a bind directory, read-only with EROFS", async () => {
    const dir = scratch();
    writeFileSync(join(dir, "config"), "v=1");
    const spec = parseVolumeFlag(`${dir}:/etc/app:ro`);
    await withBackend(spec, scratch(), async (files) => {
      expect(await files.readFile("/config", "utf8")).toBe("v=1");
      expect(await fsErrorCode(() => files.writeFile("/config", "v=2"))).toBe("EROFS");
      expect(await fsErrorCode(() => files.mkdir("/new"))).toBe("EROFS");
    });
    expect(readFileSync(join(dir, "config"), "utf8")).toBe("v=1");
  });

  it("refuses a bind path that is missing or not a directory", async () => {
    const dir = scratch();
    writeFileSync(join(dir, "file"), "");
    for (const hostPath of [join(dir, "missing"), join(dir, "file")]) {
      const error = await sandboxError(() => volumeBackend(volumeSpec("/x", (v) => v.bind(hostPath)), { home: dir }));
      expect([error.code, error.input]).toEqual(["ERR_MSB_VOLUME", hostPath]);
    }
  });

  it("refuses a named volume whose path is taken by a file", async () => {
    const home = scratch();
    mkdirSync(join(home, "volumes"));
    writeFileSync(join(home, "volumes", "taken"), "");
    const error = await sandboxError(() => volumeBackend(parseVolumeFlag("taken:/x"), { home }));
    expect([error.code, error.input]).toEqual(["ERR_MSB_VOLUME", "taken"]);
  });

  it("passes data through hooks: ciphertext on the host, plaintext through the backend", async () => {
    const key = 0x5a;
    const xor = (data: Uint8Array): Uint8Array => data.map((b) => b ^ key);
    const home = scratch();
    const spec = volumeSpec("/secrets", (v) => v.named("vault").onWrite(xor).onRead(xor));
    await withBackend(spec, home, (files) => files.writeFile("/token", "hunter2"));
    const stored = readFileSync(join(home, "volumes", "vault", "token"));
    expect(stored.toString()).not.toBe("hunter2");
    expect(Buffer.from(xor(stored)).toString()).toBe("hunter2");
    expect(await withBackend(spec, home, (files) => files.readFile("/token", "utf8"))).toBe("hunter2");
  });

  it("makes a memfs of the given capacity", async () => {
    const code = await withBackend(volumeSpec("/mem", (v) => v.memfs("64KiB")), scratch(), (files) => fsErrorCode(() => files.writeFile("/big", new Uint8Array(MiB))));
    expect(code).toBe("ENOSPC");
  });

  it("serves a given backend as is, or read-only", async () => {
    const fs = new MemFs();
    await new PathFs(fs).writeFile("/hello", "world");
    const plain = await volumeBackend(volumeSpec("/b", (v) => v.backend(fs)), { home: scratch() });
    expect(plain.fs).toBe(fs);
    await withBackend(volumeSpec("/b", (v) => v.backend(fs).readonly()), scratch(), async (files) => {
      expect(await files.readFile("/hello", "utf8")).toBe("world");
      expect(await fsErrorCode(() => files.writeFile("/hello", "changed"))).toBe("EROFS");
      expect(await fsErrorCode(() => files.writeFile("/new", "x"))).toBe("EROFS");
      expect(await fsErrorCode(() => files.rm("/hello"))).toBe("EROFS");
      expect(await fsErrorCode(() => files.chmod("/hello", 0o777))).toBe("EROFS");
    });
    expect(await new PathFs(fs).readFile("/hello", "utf8")).toBe("world");
  });

  it("leaves tmpfs to the guest and only checks a disk image", async () => {
    const home = scratch();
    const tmpfs = await volumeBackend(parseTmpfsFlag("/tmp:64MiB"), { home });
    expect(tmpfs.fs).toBeUndefined();
    expect(tmpfs.tmpfs).toEqual({ target: "/tmp", size: 64 * MiB });
    const image = join(home, "data.img");
    writeFileSync(image, new Uint8Array(4096));
    const disk = await volumeBackend(volumeSpec("/disk", (v) => v.disk(image, "ext4")), { home });
    expect(disk.fs).toBeUndefined();
    await disk.cleanup();
    for (const path of [join(home, "missing.img"), home]) {
      const error = await sandboxError(() => volumeBackend(volumeSpec("/disk", (v) => v.disk(path, "vfat")), { home }));
      expect([error.code, error.input]).toEqual(["ERR_MSB_VOLUME", path]);
    }
  });

  it("serves a bind directory with PassthroughFs semantics (guest ownership kept in the xattr)", async () => {
    const dir = scratch();
    await withBackend(volumeSpec("/w", (v) => v.bind(dir)), scratch(), async (files) => {
      await files.writeFile("/f", "x");
      await files.chown("/f", 1000, 1000);
      expect((await files.stat("/f")).uid).toBe(1000);
    });
    const again = new PassthroughFs({ rootDir: dir });
    try {
      expect((await new PathFs(again).stat("/f")).uid).toBe(1000);
    } finally {
      again.destroy();
    }
  });
});

