import { DT, Errno, FOPEN, FsBackend, FsError, O, WRITE, type Context, type DirEntryPlus, type DynFileSystem, type Entry, type OpenReply } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { describe, expect, it } from "vitest";
import { Bytes, initRequest, parseReply, request } from "./client.fixture.js";
import { Harness, cname, tick } from "./harness.fixture.js";
import { InitFlag, Op } from "./protocol.js";

const DAY = 86400;

/** A MemFs with a root-owned world-writable root, ready after INIT. */
function ready(fs: DynFileSystem = new MemFs({ rootMode: 0o777 }), options = {}): Harness {
  const h = new Harness(fs, options);
  expect(h.init().error).toBe(0);
  return h;
}

const u64 = (view: DataView, at: number): number => Number(view.getBigUint64(at, true));

/** Records the calls a test cares about and can make any operation asynchronous. */
class Spy extends FsBackend {
  readonly forgets: [number, number][] = [];
  readonly released: number[] = [];
  inits = 0;
  destroys = 0;
  defer = false;

  override init() {
    this.inits++;
    return super.init();
  }
  override destroy() {
    this.destroys++;
    return super.destroy();
  }
  override forget(ctx: Context, ino: number, nlookup: number) {
    this.forgets.push([ino, nlookup]);
    return super.forget(ctx, ino, nlookup);
  }
  override release(ctx: Context, ino: number, fh: number, flags: number) {
    this.released.push(fh);
    return super.release(ctx, ino, fh, flags);
  }
  override lookup(ctx: Context, parent: number, name: Uint8Array) {
    const entry = super.lookup(ctx, parent, name);
    return this.defer ? Promise.resolve(entry) : entry;
  }
}

function tree(): { mem: MemFs; spy: Spy; h: Harness } {
  const mem = new MemFs({ rootMode: 0o777, cache: "auto" });
  const spy = new Spy(mem);
  const h = ready(spy);
  for (const name of ["a", "b", "c", "d"]) expect(h.call(Op.MKNOD, new Bytes().u32(0o100644).u32(0).u32(0).u32(0).cstr(name)).error).toBe(0);
  return { mem, spy, h };
}

describe("INIT", () => {
  it("answers min(kernel, ours), grants only offered flags, calls init() once", () => {
    const spy = new Spy(new MemFs());
    const h = new Harness(spy);
    const reply = h.init();
    expect(reply.error).toBe(0);
    expect(reply.length).toBe(16 + 64);
    expect(reply.view.getUint32(0, true)).toBe(7);
    expect(reply.view.getUint32(4, true)).toBe(45);
    const flags = BigInt(reply.view.getUint32(12, true)) | (BigInt(reply.view.getUint32(32, true)) << 32n);
    expect(flags & InitFlag.WRITEBACK_CACHE).toBe(0n);
    expect(flags & InitFlag.EXPORT_SUPPORT).toBe(0n);
    for (const flag of ["ASYNC_READ", "BIG_WRITES", "ATOMIC_O_TRUNC", "DO_READDIRPLUS", "READDIRPLUS_AUTO", "PARALLEL_DIROPS", "HANDLE_KILLPRIV_V2", "CACHE_SYMLINKS", "MAX_PAGES", "INIT_EXT", "SETXATTR_EXT"] as const) {
      expect(flags & InitFlag[flag], flag).not.toBe(0n);
    }
    expect(reply.view.getUint32(20, true)).toBe(1 << 20); // max_write
    expect(reply.view.getUint16(28, true)).toBe(256); // max_pages
    expect(spy.inits).toBe(1);
    expect(h.server.connection).toMatchObject({ kernelMinor: 45, minor: 45, maxWrite: 1 << 20, maxPages: 256 });
    // A second INIT is a protocol error, not a second init().
    expect(h.call(Op.INIT, new Bytes().u32(7).u32(45).u32(0).u32(0)).error).toBe(-Errno.EIO);
    expect(spy.inits).toBe(1);
  });

  it("speaks an older kernel's minor: no flags2 without INIT_EXT, the 24-byte reply before 7.23", () => {
    const h31 = new Harness(new MemFs());
    const r31 = h31.init(request(Op.INIT, new Bytes().u32(7).u32(31).u32(65536).u32(0x3fffffff), { unique: 2 }));
    expect(r31.view.getUint32(4, true)).toBe(31);
    expect(BigInt(r31.view.getUint32(12, true)) & InitFlag.INIT_EXT).toBe(0n);
    expect(r31.view.getUint32(32, true)).toBe(0);
    expect(r31.view.getUint32(8, true)).toBe(65536);

    const h20 = new Harness(new MemFs());
    const r20 = h20.init(request(Op.INIT, new Bytes().u32(7).u32(20).u32(65536).u32(0xffff), { unique: 2 }));
    expect(r20.length).toBe(16 + 24);
    expect(r20.view.getUint32(4, true)).toBe(20);
  });

  it("refuses a too old kernel and asks a newer major to retry with 7", () => {
    const old = new Harness(new MemFs());
    expect(old.init(request(Op.INIT, new Bytes().u32(7).u32(11).u32(0).u32(0), { unique: 2 })).error).toBe(-Errno.EPROTO);
    expect(old.call(Op.GETATTR, new Bytes().zeros(16)).error).toBe(-Errno.EIO);

    const h = new Harness(new MemFs());
    const retry = h.init(request(Op.INIT, new Bytes().u32(8).u32(0).u32(0).u32(0), { unique: 2 }));
    expect([retry.error, retry.length, retry.view.getUint32(0, true)]).toEqual([0, 24, 7]);
    expect(h.init().error).toBe(0);
  });

  it("offers the writeback cache only when asked, and honours maxWrite/maxReadahead", () => {
    const h = new Harness(new MemFs(), { writebackCache: true, maxWrite: 128 * 1024, maxReadahead: 4096 });
    const reply = h.init();
    expect(BigInt(reply.view.getUint32(12, true)) & InitFlag.WRITEBACK_CACHE).not.toBe(0n);
    expect(reply.view.getUint32(20, true)).toBe(128 * 1024);
    expect(reply.view.getUint16(28, true)).toBe(32);
    expect(reply.view.getUint32(8, true)).toBe(4096);
    expect(() => new Harness(new MemFs(), { maxWrite: 100 })).toThrow(/maxWrite/);
  });

  it("answers requests before INIT with EIO and drops FORGET", () => {
    const h = new Harness(new MemFs());
    expect(h.call(Op.LOOKUP, cname("x")).error).toBe(-Errno.EIO);
    h.send(Op.FORGET, new Bytes().u64(1));
    expect(h.replies).toHaveLength(0);
  });

  it("DESTROY calls destroy() once, later requests get EIO, close() does not destroy again", async () => {
    const spy = new Spy(new MemFs());
    const h = ready(spy);
    const unique = h.send(Op.DESTROY);
    await tick();
    expect(parseReply(h.replies.pop()!)).toMatchObject({ error: 0, unique: BigInt(unique) });
    expect(h.call(Op.GETATTR, new Bytes().zeros(16)).error).toBe(-Errno.EIO);
    await h.server.close();
    expect(spy.destroys).toBe(1);
  });

  it("close() waits for running requests, then destroys once; later messages are dropped", async () => {
    const spy = new Spy(new MemFs());
    spy.defer = true;
    const h = ready(spy);
    h.send(Op.LOOKUP, cname("."));
    expect(h.server.inflight).toBe(1);
    await h.server.close();
    expect(h.server.inflight).toBe(0);
    expect(spy.destroys).toBe(1);
    h.send(Op.GETATTR, new Bytes().zeros(16));
    expect(h.replies).toHaveLength(1); // only the lookup's
  });
});

describe("dispatch", () => {
  it("answers a synchronous backend before handle() returns", () => {
    const h = ready();
    const unique = h.send(Op.GETATTR, new Bytes().zeros(16));
    expect(h.replies).toHaveLength(1);
    const reply = parseReply(h.replies.pop()!);
    expect(reply.unique).toBe(BigInt(unique));
    expect(reply.view.getUint32(16 + 60, true)).toBe(0o40777);
  });

  it("serves asynchronous requests concurrently and replies in completion order", async () => {
    const gates: (() => void)[] = [];
    class Slow extends FsBackend {
      override async getattr(ctx: Context, ino: number, fh?: number) {
        await new Promise<void>((resolve) => gates.push(resolve));
        return super.getattr(ctx, ino, fh);
      }
    }
    const h = ready(new Slow(new MemFs()));
    const first = h.send(Op.GETATTR, new Bytes().zeros(16));
    const second = h.send(Op.GETATTR, new Bytes().zeros(16));
    expect(h.server.inflight).toBe(2);
    gates[1]!();
    await tick();
    gates[0]!();
    await tick();
    expect(h.replies.map((r) => parseReply(r).unique)).toEqual([BigInt(second), BigInt(first)]);
  });

  it("FsError → -errno; anything else → EIO and one log line naming the op and the cause", async () => {
    class Broken extends FsBackend {
      override readlink(): never {
        throw new FsError("EINVAL", { op: "readlink" });
      }
      override statfs(): never {
        throw new Error("disk on fire");
      }
      override async access(): Promise<void> {
        await Promise.resolve();
        throw new RangeError("async bug");
      }
    }
    const h = ready(new Broken(new MemFs()));
    expect(h.call(Op.READLINK).error).toBe(-Errno.EINVAL);
    expect(h.call(Op.STATFS).error).toBe(-Errno.EIO);
    expect((await h.callAsync(Op.ACCESS, new Bytes().u32(4).u32(0))).error).toBe(-Errno.EIO);
    const errors = h.logs.filter((l) => l.level === "error").map((l) => l.message);
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/statfs .*disk on fire/);
    expect(errors[1]).toMatch(/access .*async bug/);
  });

  it("a backend answer that cannot be encoded is EIO, logged, and its lookup released", () => {
    const spy = new Spy(new MemFs());
    class Bad extends FsBackend {
      override lookup(ctx: Context, parent: number, name: Uint8Array): Entry {
        const e = spy.lookup(ctx, parent, name) as Entry;
        return { ...e, attr: { ...e.attr, size: -1 } };
      }
    }
    const h = ready(new Bad(spy));
    expect(h.call(Op.LOOKUP, cname(".")).error).toBe(-Errno.EIO);
    expect(spy.forgets).toEqual([[1, 1]]);
    expect(h.logs.some((l) => l.level === "error" && /attr.size = -1/.test(l.message))).toBe(true);
  });

  it("unknown and unserved opcodes get ENOSYS; FORGET, BATCH_FORGET, NOTIFY_REPLY, INTERRUPT get nothing", () => {
    const h = ready();
    for (const opcode of [Op.GETLK, Op.SETLK, Op.SETLKW, Op.BMAP, Op.IOCTL, Op.POLL, Op.SETUPMAPPING, Op.REMOVEMAPPING, Op.SYNCFS, Op.TMPFILE, Op.STATX, 7, 19, 200]) {
      expect(h.call(opcode, new Bytes().zeros(80)).error, `opcode ${opcode}`).toBe(-Errno.ENOSYS);
    }
    h.send(Op.FORGET, new Bytes().u64(1));
    h.send(Op.BATCH_FORGET, new Bytes().u32(1).u32(0).u64(1).u64(1));
    h.send(Op.NOTIFY_REPLY, new Bytes().zeros(40));
    h.send(Op.INTERRUPT, new Bytes().u64(12345));
    expect(h.replies).toHaveLength(0);
  });

  it("malformed requests are answered EINVAL/EIO with one log line each, never thrown", () => {
    const h = ready();
    const lookup = request(Op.LOOKUP, cname("x"), { unique: 900 });
    h.server.handle(lookup.subarray(0, 30)); // shorter than the header: EIO to its unique
    expect(h.take()).toMatchObject({ error: -Errno.EIO, unique: 900n });
    h.server.handle(lookup.subarray(0, 10)); // too short to name a unique: dropped
    expect(h.replies).toHaveLength(0);
    h.server.handle(new Uint8Array([...lookup, 0, 0])); // len disagrees with the message
    expect(h.take()).toMatchObject({ error: -Errno.EINVAL, unique: 900n });
    expect(h.call(Op.LOOKUP, new Bytes().raw([0x78])).error).toBe(-Errno.EINVAL); // no NUL
    expect(h.call(Op.READ, new Bytes().u64(1)).error).toBe(-Errno.EINVAL); // truncated fuse_read_in
    h.send(Op.FORGET, new Bytes().u32(1)); // truncated, no reply
    h.send(Op.BATCH_FORGET, new Bytes().u32(1000).u32(0).u64(1).u64(0)); // count lies
    expect(h.replies).toHaveLength(0);
    expect(h.logs.filter((l) => l.level === "warn")).toHaveLength(7);
  });

  it("a request reusing the unique of one in flight is refused", async () => {
    const spy = new Spy(new MemFs());
    spy.defer = true;
    const h = ready(spy);
    h.send(Op.LOOKUP, cname("."), { unique: 500 });
    h.send(Op.GETATTR, new Bytes().zeros(16), { unique: 500 });
    expect(h.take()).toMatchObject({ unique: 500n, error: -Errno.EIO });
    await tick();
    expect(h.take()).toMatchObject({ unique: 500n, error: 0 });
  });

  it("passes credentials and the supplementary group of the extension to the backend", () => {
    const seen: Context[] = [];
    class Creds extends FsBackend {
      override mkdir(ctx: Context, parent: number, name: Uint8Array, mode: number, umask: number) {
        seen.push(ctx);
        return super.mkdir(ctx, parent, name, mode, umask);
      }
    }
    const h = ready(new Creds(new MemFs({ rootMode: 0o777 })));
    const ext = new Bytes().u32(16).u32(32).u32(1).u32(4242).build();
    expect(h.call(Op.MKDIR, new Bytes().u32(0o755).u32(0o022).cstr("d"), { uid: 1000, gid: 1001, pid: 77, ext }).error).toBe(0);
    expect(seen).toEqual([{ uid: 1000, gid: 1001, pid: 77, groups: [4242] }]);
  });
});

describe("xattr size semantics", () => {
  it("getxattr: size 0 asks the length, a small buffer is ERANGE, a big one gets the value", () => {
    const h = ready();
    expect(h.call(Op.SETXATTR, new Bytes().u32(5).u32(0).u32(0).u32(0).cstr("user.k").raw(new TextEncoder().encode("hello"))).error).toBe(0);
    const probe = h.call(Op.GETXATTR, new Bytes().u32(0).u32(0).cstr("user.k"));
    expect([probe.error, probe.body.length, probe.view.getUint32(0, true)]).toEqual([0, 8, 5]);
    expect(h.call(Op.GETXATTR, new Bytes().u32(4).u32(0).cstr("user.k")).error).toBe(-Errno.ERANGE);
    const value = h.call(Op.GETXATTR, new Bytes().u32(5).u32(0).cstr("user.k"));
    expect(new TextDecoder().decode(value.body)).toBe("hello");
    expect(h.call(Op.GETXATTR, new Bytes().u32(100).u32(0).cstr("user.none")).error).toBe(-Errno.ENODATA);
  });

  it("listxattr: the NUL-terminated names, with the same probing", () => {
    const h = ready();
    for (const name of ["user.a", "user.bb"]) h.call(Op.SETXATTR, new Bytes().u32(1).u32(0).u32(0).u32(0).cstr(name).raw([1]));
    const probe = h.call(Op.LISTXATTR, new Bytes().u32(0).u32(0));
    expect(probe.view.getUint32(0, true)).toBe(15);
    expect(h.call(Op.LISTXATTR, new Bytes().u32(14).u32(0)).error).toBe(-Errno.ERANGE);
    const list = h.call(Op.LISTXATTR, new Bytes().u32(15).u32(0));
    expect(new TextDecoder().decode(list.body).split("\0")).toEqual(["user.a", "user.bb", ""]);
  });
});

describe("READDIR and READDIRPLUS", () => {
  function opendir(h: Harness): number {
    return u64(h.call(Op.OPENDIR, new Bytes().u32(O.RDONLY | O.DIRECTORY).u32(0)).view, 0);
  }

  it("READDIR packs what fits and resumes at the last cookie", () => {
    const { h } = tree();
    const fh = opendir(h);
    const names: string[] = [];
    let offset = 0;
    for (;;) {
      const reply = h.call(Op.READDIR, new Bytes().u64(fh).u64(offset).u32(80).u32(0).u64(0).u32(0).u32(0));
      expect(reply.body.length).toBeLessThanOrEqual(80);
      if (reply.body.length === 0) break;
      for (let at = 0; at < reply.body.length; ) {
        const namelen = reply.view.getUint32(at + 16, true);
        offset = u64(reply.view, at + 8);
        names.push(new TextDecoder().decode(reply.body.subarray(at + 24, at + 24 + namelen)));
        at += (24 + namelen + 7) & ~7;
      }
    }
    expect(names).toEqual([".", "..", "a", "b", "c", "d"]);
  });

  it("READDIRPLUS forgets every counted entry that did not fit, never . or ..", () => {
    const { mem, spy, h } = tree();
    // A backend that looks up more than the kernel's buffer holds.
    spy.readdirplus = (ctx, ino, fh, offset) => mem.readdirplus(ctx, ino, fh, offset, 65536);
    const fh = opendir(h);
    // Room for 3 direntplus records (160 bytes each): ".", "..", "a"; "b".."d" are counted but do not fit.
    const reply = h.call(Op.READDIRPLUS, new Bytes().u64(fh).u64(0).u32(3 * 160).u32(0).u64(0).u32(0).u32(0));
    expect(reply.body.length).toBe(3 * 160);
    const inos = (names: string[]) => names.map((n) => mem.lookup({ uid: 0, gid: 0, pid: 0 }, 1, new TextEncoder().encode(n)).ino);
    expect(spy.forgets.map(([ino]) => ino).sort()).toEqual(inos(["b", "c", "d"]).sort());
    expect(spy.forgets.every(([, n]) => n === 1)).toBe(true);
    expect(new DataView(reply.body.buffer, reply.body.byteOffset).getUint32(128 + 20, true)).toBe(DT.DIR);
  });
});

describe("cache policy", () => {
  function openFlags(h: Harness): [number, number] {
    h.call(Op.MKNOD, new Bytes().u32(0o100644).u32(0).u32(0).u32(0).cstr("f"));
    const ino = u64(h.call(Op.LOOKUP, cname("f")).view, 0);
    const file = h.call(Op.OPEN, new Bytes().u32(O.RDONLY).u32(0), { nodeid: ino });
    const dir = h.call(Op.OPENDIR, new Bytes().u32(O.RDONLY).u32(0));
    return [file.view.getUint32(8, true), dir.view.getUint32(8, true)];
  }

  /** MemFs with its own flags hidden, so the policy decides. */
  class NoFlags extends FsBackend {
    constructor(
      inner: DynFileSystem,
      private readonly policy: "never" | "auto" | "always",
    ) {
      super(inner);
    }
    override get cachePolicy() {
      return this.policy;
    }
    override open(ctx: Context, ino: number, flags: number): OpenReply {
      return { fh: (super.open(ctx, ino, flags) as OpenReply).fh };
    }
    override opendir(ctx: Context, ino: number, flags: number): OpenReply {
      return { fh: (super.opendir(ctx, ino, flags) as OpenReply).fh };
    }
  }

  it("never: DIRECT_IO, zero timeouts, plain ENOENT", () => {
    const h = ready(new NoFlags(new MemFs(), "never"));
    expect(openFlags(h)).toEqual([FOPEN.DIRECT_IO, 0]);
    const entry = h.call(Op.LOOKUP, cname("f"));
    expect([u64(entry.view, 16), u64(entry.view, 24)]).toEqual([0, 0]);
    expect(h.call(Op.LOOKUP, cname("missing")).error).toBe(-Errno.ENOENT);
  });

  it("auto: default flags, one second, a negative entry cached for a second", () => {
    const h = ready(new NoFlags(new MemFs(), "auto"));
    expect(openFlags(h)).toEqual([0, 0]);
    const attr = h.call(Op.GETATTR, new Bytes().zeros(16));
    expect(u64(attr.view, 0)).toBe(1);
    const negative = h.call(Op.LOOKUP, cname("missing"));
    expect([negative.error, u64(negative.view, 0), u64(negative.view, 16)]).toEqual([0, 0, 1]);
  });

  it("always: KEEP_CACHE, CACHE_DIR on directories, a day", () => {
    const h = ready(new NoFlags(new MemFs(), "always"));
    expect(openFlags(h)).toEqual([FOPEN.KEEP_CACHE, FOPEN.KEEP_CACHE | FOPEN.CACHE_DIR]);
    const entry = h.call(Op.LOOKUP, cname("f"));
    expect([u64(entry.view, 16), u64(entry.view, 24)]).toEqual([DAY, DAY]);
  });

  it("the backend's own flags and timeouts win", () => {
    class Own extends FsBackend {
      override get cachePolicy() {
        return "always" as const;
      }
      override open(): OpenReply {
        return { fh: 9, flags: FOPEN.DIRECT_IO | FOPEN.NONSEEKABLE };
      }
      override lookup(ctx: Context, parent: number, name: Uint8Array): Entry {
        return { ...(super.lookup(ctx, parent, name) as Entry), entryTimeout: 0.25, attrTimeout: 0 };
      }
    }
    const h = ready(new Own(new MemFs()));
    const open = h.call(Op.OPEN, new Bytes().u32(0).u32(0));
    expect([u64(open.view, 0), open.view.getUint32(8, true)]).toEqual([9, FOPEN.DIRECT_IO | FOPEN.NONSEEKABLE]);
    const entry = h.call(Op.LOOKUP, cname("."));
    expect([u64(entry.view, 16), entry.view.getUint32(32, true), u64(entry.view, 24)]).toEqual([0, 250_000_000, 0]);
  });
});

describe("INTERRUPT", () => {
  it("answers a pending request EINTR once and releases what its late result handed out", async () => {
    let resolveOpen!: () => void;
    let resolveLookup!: () => void;
    const spy = new Spy(new MemFs({ rootMode: 0o777 }));
    class Held extends FsBackend {
      override open(ctx: Context, ino: number, flags: number) {
        const reply = super.open(ctx, ino, flags) as OpenReply;
        return new Promise<OpenReply>((resolve) => (resolveOpen = () => resolve(reply)));
      }
      override lookup(ctx: Context, parent: number, name: Uint8Array) {
        const entry = super.lookup(ctx, parent, name) as Entry;
        return new Promise<Entry>((resolve) => (resolveLookup = () => resolve(entry)));
      }
    }
    const h = ready(new Held(spy));
    const ino = u64(h.call(Op.MKNOD, new Bytes().u32(0o100644).u32(0).u32(0).u32(0).cstr("f")).view, 0);

    const open = h.send(Op.OPEN, new Bytes().u32(O.RDONLY).u32(0), { nodeid: ino });
    const lookup = h.send(Op.LOOKUP, cname("f"));
    h.send(Op.INTERRUPT, new Bytes().u64(open), { unique: open + 1 });
    h.send(Op.INTERRUPT, new Bytes().u64(lookup), { unique: lookup + 1 });
    h.send(Op.INTERRUPT, new Bytes().u64(lookup), { unique: lookup + 1 }); // a second one changes nothing
    expect(h.replies.map((r) => [parseReply(r).unique, parseReply(r).error])).toEqual([
      [BigInt(open), -Errno.EINTR],
      [BigInt(lookup), -Errno.EINTR],
    ]);
    h.replies.length = 0;
    resolveOpen();
    resolveLookup();
    await tick();
    expect(h.replies).toHaveLength(0);
    expect(spy.released).toHaveLength(1);
    expect(spy.forgets).toEqual([[ino, 1]]);
    expect(h.server.inflight).toBe(0);
  });
});

describe("data operations", () => {
  it("WRITE then READ round-trip; READ never returns more than asked", () => {
    const h = ready();
    const created = h.call(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o100644).u32(0).u32(0).cstr("f"));
    const ino = u64(created.view, 0);
    const fh = u64(created.view, 128);
    const data = Uint8Array.from({ length: 10000 }, (_, i) => i & 0xff);
    const write = h.call(Op.WRITE, new Bytes().u64(fh).u64(0).u32(data.length).u32(0).u64(0).u32(O.RDWR).u32(0).raw(data), { nodeid: ino });
    expect(write.view.getUint32(0, true)).toBe(10000);
    const read = h.call(Op.READ, new Bytes().u64(fh).u64(100).u32(50).u32(0).u64(0).u32(0).u32(0), { nodeid: ino });
    expect([...read.body]).toEqual([...data.subarray(100, 150)]);
  });

  it("with a sink that consumes replies, READ goes through readInto into reused buffers, each reply whole and its own", async () => {
    let readIntoCalls = 0;
    let gate: (() => void) | undefined;
    class Counting extends FsBackend {
      readInto(ctx: Context, ino: number, fh: number, target: Uint8Array, offset: number): Promise<number> {
        readIntoCalls++;
        const inner = this.inner!;
        // The first read waits, so the second takes another buffer from the pool meanwhile.
        const wait = readIntoCalls === 1 ? new Promise<void>((resolve) => (gate = resolve)) : Promise.resolve();
        return wait.then(() => inner.readInto!(ctx, ino, fh, target, offset));
      }
    }
    const h = ready(new Counting(new MemFs({ rootMode: 0o777 })), { sinkConsumes: true });
    const created = h.call(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o100644).u32(0).u32(0).cstr("f"));
    const ino = u64(created.view, 0);
    const fh = u64(created.view, 128);
    const data = Uint8Array.from({ length: 3 * 4096 }, (_, i) => (i * 7) & 0xff);
    h.call(Op.WRITE, new Bytes().u64(fh).u64(0).u32(data.length).u32(0).u64(0).u32(O.RDWR).u32(0).raw(data), { nodeid: ino });
    const readAt = (offset: number, size: number): number => h.send(Op.READ, new Bytes().u64(fh).u64(offset).u32(size).u32(0).u64(0).u32(0).u32(0), { nodeid: ino });
    const first = readAt(0, 4096);
    const second = readAt(4096, 4096);
    await tick();
    gate!();
    await tick();
    const third = readAt(8192 + 100, 8000); // short: the file ends first
    await tick();
    const replies = h.replies.splice(0).map(parseReply);
    const body = (unique: number): number[] => [...replies.find((r) => r.unique === BigInt(unique))!.body];
    expect(readIntoCalls).toBe(3);
    expect(body(first)).toEqual([...data.subarray(0, 4096)]);
    expect(body(second)).toEqual([...data.subarray(4096, 8192)]);
    expect(body(third)).toEqual([...data.subarray(8292)]);
  });

  it("a lent message (handleLent) may be overwritten at once: what the backend keeps was copied out of it", async () => {
    const seen: string[] = [];
    const text = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);
    // Looks at the bytes it was given only a turn later, as an asynchronous backend does.
    class Late extends FsBackend {
      override async mknod(ctx: Context, parent: number, name: Uint8Array, mode: number, rdev: number, umask: number) {
        await tick();
        seen.push(`mknod ${text(name)}`);
        return this.inner!.mknod(ctx, parent, name, mode, rdev, umask);
      }
      override async symlink(ctx: Context, target: Uint8Array, parent: number, name: Uint8Array) {
        await tick();
        seen.push(`symlink ${text(name)} -> ${text(target)}`);
        return this.inner!.symlink(ctx, target, parent, name);
      }
      override async rename(ctx: Context, parent: number, name: Uint8Array, newParent: number, newName: Uint8Array, flags: number) {
        await tick();
        seen.push(`rename ${text(name)} ${text(newName)}`);
        return this.inner!.rename(ctx, parent, name, newParent, newName, flags);
      }
      override async write(ctx: Context, ino: number, fh: number, data: Uint8Array, offset: number, flags: number) {
        await tick();
        seen.push(`write ${text(data)}`);
        return this.inner!.write(ctx, ino, fh, data, offset, flags);
      }
      override async setxattr(ctx: Context, ino: number, name: Uint8Array, value: Uint8Array, flags: number) {
        await tick();
        seen.push(`setxattr ${text(name)}=${text(value)}`);
        return this.inner!.setxattr(ctx, ino, name, value, flags);
      }
    }
    const h = ready(new Late(new MemFs({ rootMode: 0o777 })), { sinkConsumes: true });
    const created = h.call(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o100644).u32(0).u32(0).cstr("f"));
    const ino = u64(created.view, 0);
    const fh = u64(created.view, 128);
    // One buffer for every request, scribbled over as soon as handleLent returns, as the next read would.
    const buffer = new Uint8Array(4096);
    let unique = 1000;
    const lend = (opcode: number, args: Bytes, nodeid = 1): void => {
      const message = request(opcode, args, { unique: (unique += 2), nodeid });
      buffer.set(message);
      h.server.handleLent(buffer.subarray(0, message.length));
      buffer.fill(0x2f);
    };
    lend(Op.MKNOD, new Bytes().u32(0o100644).u32(0).u32(0).u32(0).cstr("node"));
    lend(Op.SYMLINK, new Bytes().cstr("link").cstr("target"));
    lend(Op.RENAME2, new Bytes().u64(1).u32(0).u32(0).cstr("node").cstr("moved"));
    lend(Op.WRITE, new Bytes().u64(fh).u64(0).u32(5).u32(0).u64(0).u32(O.RDWR).u32(0).raw(new TextEncoder().encode("data!")), ino);
    lend(Op.SETXATTR, new Bytes().u32(3).u32(0).u32(0).u32(0).cstr("user.k").raw(new TextEncoder().encode("val")), ino);
    // Answered in place, before handleLent returns: nothing to copy.
    lend(Op.GETATTR, new Bytes().zeros(16), ino);
    expect(parseReply(h.replies.at(-1)!).error).toBe(0);
    for (let i = 0; i < 4; i++) await tick();
    expect(seen.sort()).toEqual(["mknod node", "rename node moved", "setxattr user.k=val", "symlink link -> target", "write data!"]);
    expect(h.replies.map((r) => parseReply(r).error)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it("COPY_FILE_RANGE reports in 32 bits, COPY_FILE_RANGE_64 in 64; the length is capped for the former", () => {
    const lengths: number[] = [];
    class Copy extends FsBackend {
      override copyFileRange(_c: Context, _i: number, _f: number, _o: number, _io: number, _fo: number, _oo: number, length: number) {
        lengths.push(length);
        return length;
      }
    }
    const h = ready(new Copy(new MemFs()));
    const args = (len: number) => new Bytes().u64(1).u64(0).u64(1).u64(2).u64(0).u64(len).u64(0);
    expect(h.call(Op.COPY_FILE_RANGE, args(2 ** 33)).view.getUint32(0, true)).toBe(0xfffff000);
    const wide = h.call(Op.COPY_FILE_RANGE_64, args(2 ** 33));
    expect([wide.body.length, u64(wide.view, 0)]).toEqual([8, 2 ** 33]);
    expect(lengths).toEqual([0xfffff000, 2 ** 33]);
  });

  it("a READDIRPLUS result of an interrupted request is forgotten entirely", async () => {
    const { spy, h } = tree();
    const fh = u64(h.call(Op.OPENDIR, new Bytes().u32(0).u32(0)).view, 0);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const original = spy.readdirplus.bind(spy);
    spy.readdirplus = async (...args: Parameters<Spy["readdirplus"]>): Promise<DirEntryPlus[]> => {
      const list = await original(...args);
      await gate;
      return list;
    };
    const unique = h.send(Op.READDIRPLUS, new Bytes().u64(fh).u64(0).u32(4096).u32(0).u64(0).u32(0).u32(0));
    await tick();
    h.send(Op.INTERRUPT, new Bytes().u64(unique), { unique: unique + 1 });
    expect(h.take().error).toBe(-Errno.EINTR);
    release();
    await tick();
    expect(spy.forgets).toHaveLength(4); // a, b, c, d; not . and ..
  });
});

describe("suid/sgid clearing (HANDLE_KILLPRIV_V2)", () => {
  it("tells the kernel to drop cached attributes before answering a write or truncating open that may clear them", () => {
    const h = ready(new MemFs({ rootMode: 0o777, cache: "auto" }));
    const created = h.call(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o106777).u32(0).u32(0).cstr("s"));
    const [ino, fh] = [u64(created.view, 0), u64(created.view, 128)];
    h.send(Op.WRITE, new Bytes().u64(fh).u64(0).u32(1).u32(WRITE.KILL_SUIDGID).u64(0).u32(0).u32(0).raw([1]), { nodeid: ino, uid: 1000, gid: 1000 });
    expect(h.replies).toHaveLength(2);
    const [notify, reply] = h.replies.splice(0).map(parseReply);
    expect([notify!.unique, notify!.error, notify!.length, u64(notify!.view, 0)]).toEqual([0n, 2, 40, ino]);
    expect(notify!.view.getBigInt64(8, true)).toBe(-1n);
    expect(reply!.error).toBe(0);
    h.send(Op.OPEN, new Bytes().u32(O.WRONLY | O.TRUNC).u32(1), { nodeid: ino });
    expect(h.replies.map((r) => parseReply(r).unique)).toEqual([0n, expect.any(BigInt)]);
    h.replies.length = 0;
    // A plain write by root carries no KILL_SUIDGID: nothing extra.
    h.send(Op.WRITE, new Bytes().u64(fh).u64(0).u32(1).u32(0).u64(0).u32(0).u32(0).raw([1]), { nodeid: ino });
    expect(h.replies).toHaveLength(1);
  });

  it("sends nothing extra when attributes are never cached", () => {
    const h = ready(new MemFs({ rootMode: 0o777, cache: "never" }));
    const created = h.call(Op.CREATE, new Bytes().u32(O.RDWR | O.CREAT).u32(0o106777).u32(0).u32(0).cstr("s"));
    h.send(Op.WRITE, new Bytes().u64(u64(created.view, 128)).u64(0).u32(1).u32(WRITE.KILL_SUIDGID).u64(0).u32(0).u32(0).raw([1]), { nodeid: u64(created.view, 0) });
    expect(h.replies).toHaveLength(1);
  });
});

describe("SETXATTR framing follows the negotiated form", () => {
  it("uses the 8-byte fuse_setxattr_in when SETXATTR_EXT is not granted", () => {
    const h = new Harness(new MemFs());
    h.init(initRequest(2, 45, 0x73fffffb & ~(1 << 29)));
    expect(h.call(Op.SETXATTR, new Bytes().u32(1).u32(0).cstr("user.x").raw([7])).error).toBe(0);
    expect([...h.call(Op.GETXATTR, new Bytes().u32(1).u32(0).cstr("user.x")).body]).toEqual([7]);
  });
});
