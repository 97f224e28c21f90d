import { afterEach, describe, expect, it } from "vitest";
import { S } from "./constants.js";
import { FsError } from "./errno.js";
import { toBytes } from "./names.js";
import { PathFs } from "./path-fs.js";
import { TreeFs } from "./tree-fs.fixture.js";

let tree: TreeFs;
let files: PathFs;

function setup(options?: ConstructorParameters<typeof PathFs>[1]): PathFs {
  tree = new TreeFs();
  files = new PathFs(tree, options);
  return files;
}

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (FsError.isInstance(error)) return error.code;
    throw error;
  }
  throw new Error("expected an FsError");
}

afterEach(() => {
  // Whatever a test did, every lookup PathFs took was given back.
  expect(tree.outstandingLookups()).toBe(0);
});

describe("PathFs files", () => {
  it("writes, reads, appends and truncates", async () => {
    setup();
    await files.writeFile("/a.txt", "hello");
    expect(await files.readFile("/a.txt", "utf8")).toBe("hello");
    await files.appendFile("/a.txt", " world");
    expect(await files.readFile("a.txt", "utf8")).toBe("hello world");
    await files.writeFile("/a.txt", "bye");
    expect(await files.readFile("/a.txt")).toEqual(toBytes("bye"));
    await files.truncate("/a.txt", 1);
    expect(await files.readFile("/a.txt", "utf8")).toBe("b");
    await files.appendFile("/new.txt", "x");
    expect(await files.readFile("/new.txt", "utf8")).toBe("x");
  });

  it("writes in chunks and reads until end of file", async () => {
    setup({ chunkSize: 3 });
    const data = toBytes("0123456789abcdef");
    await files.writeFile("/big", data);
    expect(await files.readFile("/big")).toEqual(data);
  });

  it("creates files with the mode minus the umask", async () => {
    setup({ umask: 0o027 });
    await files.writeFile("/f", "", { mode: 0o666 });
    expect((await files.stat("/f")).mode).toBe(S.IFREG | 0o640);
  });

  it("honours exclusive creation", async () => {
    setup();
    await files.writeFile("/f", "1", { exclusive: true });
    expect(await errorCode(files.writeFile("/f", "2", { exclusive: true }))).toBe("EEXIST");
    expect(await files.readFile("/f", "utf8")).toBe("1");
  });

  it("reports the errors the kernel would", async () => {
    setup();
    await files.mkdir("/d");
    await files.writeFile("/f", "x");
    expect(await errorCode(files.readFile("/missing"))).toBe("ENOENT");
    expect(await errorCode(files.readFile("/d"))).toBe("EISDIR");
    expect(await errorCode(files.writeFile("/d", "x"))).toBe("EISDIR");
    expect(await errorCode(files.readFile("/f/x"))).toBe("ENOTDIR");
    expect(await errorCode(files.writeFile("/missing/x", "x"))).toBe("ENOENT");
    expect(await errorCode(files.readlink("/f"))).toBe("EINVAL");
    expect(await errorCode(files.writeFile("/", "x"))).toBe("EISDIR");
  });

  it("refuses a backend that claims impossible write counts", async () => {
    setup();
    tree.write = () => 0;
    expect(await errorCode(files.writeFile("/f", "abc"))).toBe("EIO");
  });
});

describe("PathFs directories", () => {
  it("creates parents with recursive mkdir and tolerates existing directories", async () => {
    setup();
    await files.mkdir("/a/b/c", { recursive: true });
    await files.mkdir("/a/b/c", { recursive: true });
    expect((await files.stat("/a/b/c")).mode & S.IFMT).toBe(S.IFDIR);
    expect(await errorCode(files.mkdir("/a"))).toBe("EEXIST");
    expect(await errorCode(files.mkdir("/x/y"))).toBe("ENOENT");
    await files.writeFile("/a/file", "");
    expect(await errorCode(files.mkdir("/a/file/sub", { recursive: true }))).toBe("ENOTDIR");
    expect(await errorCode(files.mkdir("/a/file", { recursive: true }))).toBe("ENOTDIR");
  });

  it("lists entries across several readdir calls without . and ..", async () => {
    setup();
    for (const n of ["a", "b", "c", "d", "e"]) await files.writeFile(`/${n}`, n);
    await files.mkdir("/sub");
    const entries = await files.readdir("/");
    expect(entries.map((e) => e.name)).toEqual(["a", "b", "c", "d", "e", "sub"]);
    expect(entries.find((e) => e.name === "sub")?.kind).toBe("directory");
    expect(entries.find((e) => e.name === "a")?.kind).toBe("file");
  });

  it("fails when a backend's readdir offset does not advance", async () => {
    setup();
    await files.writeFile("/a", "");
    tree.readdir = () => [{ ino: 2, offset: 0, type: 8, name: toBytes("a") }];
    expect(await errorCode(files.readdir("/"))).toBe("EIO");
  });

  it("removes files, empty directories and whole trees", async () => {
    setup();
    await files.mkdir("/t/a/b", { recursive: true });
    await files.writeFile("/t/a/b/f", "x");
    await files.symlink("/nowhere", "/t/a/link");
    expect(await errorCode(files.rm("/t"))).toBe("ENOTEMPTY");
    await files.rm("/t", { recursive: true });
    expect(await files.exists("/t")).toBe(false);
    expect(await errorCode(files.rm("/t"))).toBe("ENOENT");
    await files.rm("/t", { force: true });
    expect(await errorCode(files.rm("/"))).toBe("EBUSY");
  });
});

describe("PathFs names and links", () => {
  it("follows relative and absolute symlinks, not the last one for lstat", async () => {
    setup();
    await files.mkdir("/etc/app", { recursive: true });
    await files.writeFile("/etc/app/conf", "v=1");
    await files.symlink("app/conf", "/etc/rel");
    await files.symlink("/etc/app", "/abs");
    expect(await files.readFile("/etc/rel", "utf8")).toBe("v=1");
    expect(await files.readFile("/abs/conf", "utf8")).toBe("v=1");
    expect((await files.lstat("/etc/rel")).mode & S.IFMT).toBe(S.IFLNK);
    expect((await files.stat("/etc/rel")).mode & S.IFMT).toBe(S.IFREG);
    expect(await files.readlink("/etc/rel")).toBe("app/conf");
  });

  it("resolves .. physically, never above the root", async () => {
    setup();
    await files.mkdir("/a/b", { recursive: true });
    await files.mkdir("/c");
    await files.writeFile("/c/target", "c");
    await files.writeFile("/a/target", "a");
    await files.symlink("/a/b", "/c/link");
    // /c/link/.. is /a (the link's target's parent), not /c.
    expect(await files.readFile("/c/link/../target", "utf8")).toBe("a");
    expect(await files.readFile("/../../c/target", "utf8")).toBe("c");
    expect(await files.readFile("/a/./b/../target", "utf8")).toBe("a");
  });

  it("stops symlink loops with ELOOP", async () => {
    setup();
    await files.symlink("/loop2", "/loop1");
    await files.symlink("/loop1", "/loop2");
    expect(await errorCode(files.readFile("/loop1"))).toBe("ELOOP");
    expect((await files.lstat("/loop1")).mode & S.IFMT).toBe(S.IFLNK);
  });

  it("treats a symlink to / as the root", async () => {
    setup();
    await files.writeFile("/f", "root file");
    await files.symlink("/", "/r");
    expect(await files.readFile("/r/f", "utf8")).toBe("root file");
    expect((await files.stat("/r")).ino).toBe(1);
  });

  it("writes through a dangling symlink into its target", async () => {
    setup();
    await files.symlink("target", "/link");
    await files.writeFile("/link", "via link");
    expect(await files.readFile("/target", "utf8")).toBe("via link");
  });

  it("keeps names that are not UTF-8", async () => {
    setup();
    const dir = new Uint8Array([0x2f, 0xff, 0xfe]);
    const file = new Uint8Array([...dir, 0x2f, 0x80]);
    await files.mkdir(dir);
    await files.writeFile(file, "bytes");
    expect(await files.readFile(file, "utf8")).toBe("bytes");
    const [entry] = await files.readdir(dir);
    expect(entry?.nameBytes).toEqual(new Uint8Array([0x80]));
    expect(entry?.name).toBe("\ufffd");
    await files.symlink(new Uint8Array([0xc0]), "/l");
    expect(await files.readlink("/l", { encoding: "buffer" })).toEqual(new Uint8Array([0xc0]));
  });

  it("hard-links and renames", async () => {
    setup();
    await files.writeFile("/a", "data");
    await files.link("/a", "/b");
    expect((await files.stat("/a")).nlink).toBe(2);
    expect((await files.stat("/b")).ino).toBe((await files.stat("/a")).ino);
    await files.mkdir("/d");
    await files.rename("/b", "/d/c");
    expect(await files.readFile("/d/c", "utf8")).toBe("data");
    expect(await files.exists("/b")).toBe(false);
    expect(await errorCode(files.rename("/missing", "/x"))).toBe("ENOENT");
    expect(await errorCode(files.rename("/", "/x"))).toBe("EBUSY");
    expect(await errorCode(files.link("/a", "/d/c"))).toBe("EEXIST");
    expect(await errorCode(files.symlink("x", "/a"))).toBe("EEXIST");
  });

  it("needs search permission for '.' and '..' as for any name, and read permission before EISDIR", async () => {
    setup();
    await files.mkdir("/private/inner", { recursive: true });
    await files.chmod("/private", 0o700);
    await files.mkdir("/open", { mode: 0o755 });
    await files.mkdir("/unreadable", { mode: 0o311 });
    const alice = new PathFs(tree, { ctx: { uid: 1000, gid: 1000, pid: 1 } });
    // The walk enters /private by name (root is searchable), then asks it for '..' or '.'.
    expect(await errorCode(alice.stat("/private/.."))).toBe("EACCES");
    expect(await errorCode(alice.stat("/private/."))).toBe("EACCES");
    expect((await alice.stat("/open/..")).ino).toBe((await files.stat("/")).ino);
    expect((await alice.stat("/open/.")).ino).toBe((await files.stat("/open")).ino);
    // Root searches every directory.
    expect((await files.stat("/private/inner/..")).ino).toBe((await files.stat("/private")).ino);
    expect(await errorCode(alice.readFile("/unreadable"))).toBe("EACCES");
    expect(await errorCode(alice.readFile("/open"))).toBe("EISDIR");
  });

  it("changes modes, owners and times", async () => {
    setup();
    await files.writeFile("/f", "");
    await files.symlink("/f", "/l");
    await files.chmod("/l", 0o4711);
    expect((await files.stat("/f")).mode).toBe(S.IFREG | 0o4711);
    await files.chown("/f", 1000, -1);
    expect(await files.stat("/f")).toMatchObject({ uid: 1000, gid: 0 });
    await files.lchown("/l", 7, 8);
    expect(await files.lstat("/l")).toMatchObject({ uid: 7, gid: 8 });
    expect(await files.stat("/l")).toMatchObject({ uid: 1000, gid: 0 });
    await files.utimes("/f", new Date(2000), 3);
    expect(await files.stat("/f")).toMatchObject({ atime: { sec: 2, nsec: 0 }, mtime: { sec: 3, nsec: 0 } });
  });

  it("walks a tree depth first without following symlinks", async () => {
    setup();
    await files.mkdir("/w/a", { recursive: true });
    await files.writeFile("/w/a/f", "");
    await files.writeFile("/w/g", "");
    await files.symlink("/", "/w/up");
    const seen = [];
    for await (const e of files.walk("/w")) seen.push([e.path, e.depth, e.attr.mode & S.IFMT]);
    expect(seen).toEqual([
      ["", 0, S.IFDIR],
      ["a", 1, S.IFDIR],
      ["a/f", 2, S.IFREG],
      ["g", 1, S.IFREG],
      ["up", 1, S.IFLNK],
    ]);
  });

  it("gives lookups back when a walk is abandoned", async () => {
    setup();
    await files.mkdir("/w/a/b", { recursive: true });
    for await (const e of files.walk("/")) if (e.depth === 3) break;
  });

  it("rejects a bad chunk size", () => {
    tree = new TreeFs();
    expect(() => new PathFs(tree, { chunkSize: 0 })).toThrow(TypeError);
  });
});
