// A complete read-only backend in ~60 lines: files from a plain object, served
// through the DynFileSystem contract and read back with PathFs. Run it with
// `pnpm exec tsx packages/fs/examples/static-fs.ts` or through its test.
import {
  ACCESS,
  DT,
  FsBackend,
  FsError,
  PathFs,
  ROOT_INO,
  S,
  bytesToString,
  checkAccess,
  withHooks,
  type Attr,
  type Context,
  type DirEntry,
  type Entry,
  type OpenReply,
} from "@msb/fs";

const EPOCH = { sec: 0, nsec: 0 };

/** Serves `files` (name → content) as regular files in the root directory. */
export class StaticFs extends FsBackend {
  readonly #names: string[];
  readonly #data: Uint8Array[];

  constructor(files: Record<string, string>) {
    super();
    this.#names = Object.keys(files);
    this.#data = Object.values(files).map((text) => new TextEncoder().encode(text));
  }

  override get cachePolicy() {
    return "always" as const;
  }

  #attr(ino: number): Attr {
    const dir = ino === ROOT_INO;
    const data = this.#data[ino - 2];
    if (!dir && data === undefined) throw new FsError("ENOENT", { op: "getattr", ino });
    const size = dir ? 0 : data!.length;
    return { ino, size, blocks: Math.ceil(size / 512), atime: EPOCH, mtime: EPOCH, ctime: EPOCH, mode: dir ? S.IFDIR | 0o555 : S.IFREG | 0o444, nlink: dir ? 2 : 1, uid: 0, gid: 0, rdev: 0, blksize: 4096 };
  }

  override lookup(ctx: Context, parent: number, name: Uint8Array): Entry {
    if (parent !== ROOT_INO) throw new FsError("ENOTDIR", { op: "lookup", ino: parent });
    checkAccess(this.#attr(ROOT_INO), ctx, ACCESS.X_OK, "lookup");
    const index = this.#names.indexOf(bytesToString(name));
    if (index < 0) throw new FsError("ENOENT", { op: "lookup", path: bytesToString(name) });
    return { ino: index + 2, generation: 0, attr: this.#attr(index + 2) };
  }

  override getattr(_ctx: Context, ino: number): Attr {
    return this.#attr(ino);
  }

  override open(ctx: Context, ino: number, flags: number): OpenReply {
    if ((flags & 3) !== 0) throw new FsError("EROFS", { op: "open", ino });
    checkAccess(this.#attr(ino), ctx, ACCESS.R_OK, "open");
    return { fh: 0 };
  }

  override read(_ctx: Context, ino: number, _fh: number, size: number, offset: number): Uint8Array {
    return this.#data[ino - 2]?.subarray(offset, offset + size) ?? new Uint8Array(0);
  }

  override flush(): void {}
  override release(): void {}
  override opendir(): OpenReply {
    return { fh: 0 };
  }
  override releasedir(): void {}

  override readdir(_ctx: Context, ino: number, _fh: number, offset: number): DirEntry[] {
    const dots = [".", ".."].map((name) => ({ ino: ROOT_INO, type: DT.DIR, name }));
    const files = this.#names.map((name, i) => ({ ino: i + 2, type: DT.REG, name }));
    return [...dots, ...files]
      .map((e, i) => ({ ...e, offset: i + 1, name: new TextEncoder().encode(e.name) }))
      .slice(offset);
  }
}

export async function main(): Promise<string[]> {
  const shout = (data: Uint8Array) => new TextEncoder().encode(bytesToString(data).toUpperCase());
  const files = new PathFs(withHooks(new StaticFs({ "motd.txt": "hello from msb\n", "version": "0.1.0" }), { onRead: shout }));
  const lines: string[] = [];
  for (const entry of await files.readdir("/")) {
    lines.push(`${entry.name}: ${(await files.readFile(`/${entry.name}`, "utf8")).trim()}`);
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log((await main()).join("\n"));
}
