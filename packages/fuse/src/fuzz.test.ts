// Seeded fuzzing of the server core: valid requests, then the same mutated
// (bytes flipped, truncated, extended, lengths and opcodes lied about), fed
// to FuseServer.handle over three backends (MemFs, the same answering with
// Promises and served lent messages through handleLent, and a chaotic one
// that throws and returns garbage). Invariants:
// handle never throws; every request that has a reply gets exactly one,
// well-formed, within two event-loop turns; nothing stays in flight.
import { FsError, type DynFileSystem } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { describe, expect, it } from "vitest";
import { Bytes, joinReply, parseReply, request } from "./client.fixture.js";
import { collectingLogger, tick, type LogLine } from "./harness.fixture.js";
import { Op, isNoReply } from "./protocol.js";
import { FuseServer } from "./server.js";

/** mulberry32: a small seeded PRNG, so a failure replays. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rng = () => number;
const int = (rng: Rng, n: number): number => Math.floor(rng() * n);
const pick = <T>(rng: Rng, items: readonly T[]): T => items[int(rng, items.length)]!;
const NAMES = ["a", "b", "c", "dir", "f", ".", "..", "long".repeat(60), "x\u00ff"];
const XATTRS = ["user.a", "user.b", "trusted.t", "security.s", "system.posix_acl_access", "bogus"];

/** What the fuzzer learned from replies, so later requests name real inodes and handles. */
interface Known {
  readonly uniques: number[];
  readonly inos: number[];
  readonly handles: (readonly [ino: number, fh: number])[];
  /** The request each pending unique was, to read its reply. */
  readonly sent: Map<number, { opcode: number; nodeid: number }>;
}

const USES_FH = new Set<number>([Op.READ, Op.WRITE, Op.RELEASE, Op.RELEASEDIR, Op.FLUSH, Op.FSYNC, Op.FSYNCDIR, Op.READDIR, Op.READDIRPLUS, Op.FALLOCATE, Op.LSEEK, Op.COPY_FILE_RANGE, Op.COPY_FILE_RANGE_64, Op.GETATTR, Op.SETATTR]);

/** A plausible request: its nodeid and arguments. */
function generate(rng: Rng, opcode: number, known: Known): { nodeid: number; body: Bytes } {
  const handle = known.handles.length > 0 && USES_FH.has(opcode) && rng() < 0.8 ? pick(rng, known.handles) : undefined;
  const nodeid = handle?.[0] ?? (rng() < 0.1 ? int(rng, 2 ** 40) : pick(rng, known.inos));
  return { nodeid, body: args(rng, opcode, known, handle?.[1]) };
}

function args(rng: Rng, opcode: number, known: Known, handle: number | undefined): Bytes {
  const b = new Bytes();
  const uniques = known.uniques;
  const name = (): Bytes => b.cstr(pick(rng, NAMES));
  const fh = (): number => handle ?? int(rng, 6);
  const read = (): Bytes => b.u64(fh()).u64(int(rng, 1 << 20)).u32(int(rng, 3) === 0 ? 0 : int(rng, 70000)).u32(0).u64(0).u32(0).u32(0);
  switch (opcode) {
    case Op.LOOKUP:
    case Op.UNLINK:
    case Op.RMDIR:
      return name();
    case Op.FORGET:
      return b.u64(int(rng, 3));
    case Op.BATCH_FORGET: {
      const n = int(rng, 4);
      b.u32(n).u32(0);
      for (let i = 0; i < n; i++) b.u64(int(rng, 12)).u64(int(rng, 2));
      return b;
    }
    case Op.GETATTR:
      return b.u32(int(rng, 2)).u32(0).u64(fh());
    case Op.SETATTR:
      return b.u32(int(rng, 1 << 12)).u32(0).u64(fh()).u64(int(rng, 1 << 20)).u64(0).u64(int(rng, 2 ** 31)).u64(0).u64(0).u32(int(rng, 2e9)).u32(0).u32(0).u32(int(rng, 0o177777)).u32(0).u32(int(rng, 2000)).u32(int(rng, 2000)).u32(0);
    case Op.SYMLINK:
      return name().cstr(pick(rng, NAMES));
    case Op.MKNOD:
      return b.u32(pick(rng, [0o100644, 0o010644, 0o140755, 0o020644, 0o040755, 0])).u32(int(rng, 300)).u32(0o022).u32(0).cstr(pick(rng, NAMES));
    case Op.MKDIR:
      return b.u32(0o755).u32(0o022).cstr(pick(rng, NAMES));
    case Op.RENAME:
      return b.u64(pick(rng, known.inos)).cstr(pick(rng, NAMES)).cstr(pick(rng, NAMES));
    case Op.RENAME2:
      return b.u64(pick(rng, known.inos)).u32(int(rng, 8)).u32(0).cstr(pick(rng, NAMES)).cstr(pick(rng, NAMES));
    case Op.LINK:
      return b.u64(pick(rng, known.inos)).cstr(pick(rng, NAMES));
    case Op.OPEN:
    case Op.OPENDIR:
      return b.u32(pick(rng, [0, 1, 2, 0o1002, 0o2001, 0o200000])).u32(0);
    case Op.CREATE:
      return b.u32(pick(rng, [0o101, 0o302, 0o1102])).u32(0o100644).u32(0o022).u32(0).cstr(pick(rng, NAMES));
    case Op.READ:
    case Op.READDIR:
    case Op.READDIRPLUS:
      return read();
    case Op.WRITE: {
      const size = int(rng, 9000);
      return b.u64(fh()).u64(int(rng, 1 << 20)).u32(size).u32(int(rng, 8)).u64(0).u32(0).u32(0).zeros(size);
    }
    case Op.RELEASE:
    case Op.RELEASEDIR:
    case Op.FLUSH:
      return b.u64(fh()).u32(0).u32(0).u64(0);
    case Op.FSYNC:
    case Op.FSYNCDIR:
      return b.u64(fh()).u32(int(rng, 2)).u32(0);
    case Op.SETXATTR: {
      const value = int(rng, 70);
      return b.u32(value).u32(int(rng, 3)).u32(0).u32(0).cstr(pick(rng, XATTRS)).zeros(value);
    }
    case Op.GETXATTR:
      return b.u32(int(rng, 3) === 0 ? 0 : int(rng, 100)).u32(0).cstr(pick(rng, XATTRS));
    case Op.LISTXATTR:
      return b.u32(int(rng, 2) === 0 ? 0 : int(rng, 40)).u32(0);
    case Op.REMOVEXATTR:
      return b.cstr(pick(rng, XATTRS));
    case Op.ACCESS:
      return b.u32(int(rng, 8)).u32(0);
    case Op.INTERRUPT:
      return b.u64(uniques.length > 0 ? pick(rng, uniques) : 0);
    case Op.FALLOCATE:
      return b.u64(fh()).u64(int(rng, 1 << 20)).u64(int(rng, 1 << 16)).u32(pick(rng, [0, 1, 3, 0x10, 0x20])).u32(0);
    case Op.LSEEK:
      return b.u64(fh()).u64(int(rng, 1 << 20)).u32(int(rng, 6)).u32(0);
    case Op.COPY_FILE_RANGE:
    case Op.COPY_FILE_RANGE_64:
      return b.u64(fh()).u64(int(rng, 4096)).u64(pick(rng, known.inos)).u64(fh()).u64(int(rng, 4096)).u64(int(rng, 8192)).u64(0);
    default:
      return b.zeros(int(rng, 64));
  }
}

const OPCODES = [
  Op.LOOKUP, Op.FORGET, Op.GETATTR, Op.SETATTR, Op.READLINK, Op.SYMLINK, Op.MKNOD, Op.MKDIR, Op.UNLINK, Op.RMDIR, Op.RENAME,
  Op.LINK, Op.OPEN, Op.READ, Op.WRITE, Op.STATFS, Op.RELEASE, Op.FSYNC, Op.SETXATTR, Op.GETXATTR, Op.LISTXATTR, Op.REMOVEXATTR,
  Op.FLUSH, Op.OPENDIR, Op.READDIR, Op.RELEASEDIR, Op.FSYNCDIR, Op.ACCESS, Op.CREATE, Op.INTERRUPT, Op.BATCH_FORGET,
  Op.FALLOCATE, Op.READDIRPLUS, Op.RENAME2, Op.LSEEK, Op.COPY_FILE_RANGE, Op.COPY_FILE_RANGE_64, Op.GETLK, Op.IOCTL,
  Op.POLL, Op.STATX, Op.NOTIFY_REPLY, Op.TMPFILE,
];

function mutate(rng: Rng, message: Uint8Array): Uint8Array {
  const m = message.slice();
  const view = new DataView(m.buffer);
  switch (int(rng, 8)) {
    case 0: // flip bytes anywhere after the unique
      for (let n = 1 + int(rng, 6); n > 0; n--) if (m.length > 16) m[16 + int(rng, m.length - 16)] = int(rng, 256);
      return m;
    case 1: // truncate, keeping len as it was or fixing it up
      return m.subarray(0, int(rng, m.length));
    case 2: {
      const cut = m.slice(0, Math.max(40, int(rng, m.length)));
      new DataView(cut.buffer).setUint32(0, cut.length, true);
      return cut;
    }
    case 3: // extend with junk and claim it
      {
        const longer = new Uint8Array(m.length + 1 + int(rng, 64));
        longer.set(m);
        for (let i = m.length; i < longer.length; i++) longer[i] = int(rng, 256);
        new DataView(longer.buffer).setUint32(0, int(rng, 2) === 0 ? longer.length : m.length, true);
        return longer;
      }
    case 4: // another opcode's arguments (never DESTROY: it ends the round)
      view.setUint32(4, pick(rng, [...OPCODES, Op.INIT, 0, 7, 19, 99, 4096, 0xffffffff]), true);
      return m;
    case 5: // total_extlen lies or describes junk
      view.setUint16(36, int(rng, 4) === 0 ? int(rng, 65536) : int(rng, 4), true);
      return m;
    case 6: // nodeid out of range
      view.setUint32(20, int(rng, 2 ** 32), true);
      return m;
    default: // random bytes with a plausible header
      for (let i = 40; i < m.length; i++) m[i] = int(rng, 256);
      return m;
  }
}

/** A backend that answers at random: the real answer, a Promise of it, an FsError, a bug, garbage. */
function chaos(inner: DynFileSystem, rng: Rng): DynFileSystem {
  return new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== "function" || prop === "init") return value;
      return (...a: unknown[]) => {
        switch (int(rng, 8)) {
          case 0:
            throw new FsError(pick(rng, ["ENOENT", "EIO", "ENOSPC", "EACCES", "EXDEV"] as const));
          case 1:
            throw new TypeError("backend bug");
          case 2:
            return Promise.reject(new Error("async backend bug"));
          case 3:
            return pick(rng, [null, undefined, {}, [], Number.NaN, -1, "str", { fh: -1 }, [{ name: 5 }], new Uint8Array(3)]);
          case 4:
            return Promise.resolve().then(() => (value as (...x: unknown[]) => unknown).apply(target, a));
          default:
            return (value as (...x: unknown[]) => unknown).apply(target, a);
        }
      };
    },
  });
}

/** MemFs answering every call with a Promise. */
function promising(inner: DynFileSystem): DynFileSystem {
  return new Proxy(inner, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop);
      if (typeof value !== "function") return value;
      return (...a: unknown[]) => Promise.resolve().then(() => (value as (...x: unknown[]) => unknown).apply(target, a));
    },
  });
}

/** Records the inodes and handles a successful reply hands out. */
function learn(known: Known, reply: ReturnType<typeof parseReply>): void {
  const request = known.sent.get(Number(reply.unique));
  if (request === undefined || reply.body.length < 8) return;
  const first = Number(reply.view.getBigUint64(0, true));
  switch (request.opcode) {
    case Op.LOOKUP:
    case Op.MKNOD:
    case Op.MKDIR:
    case Op.SYMLINK:
    case Op.LINK:
      if (first !== 0 && reply.body.length === 128 && !known.inos.includes(first)) known.inos.push(first);
      return;
    case Op.CREATE:
      if (reply.body.length === 144) known.handles.push([first, Number(reply.view.getBigUint64(128, true))]);
      return;
    case Op.OPEN:
    case Op.OPENDIR:
      if (reply.body.length === 16) known.handles.push([request.nodeid, first]);
  }
}

/** The replies a message must get, judged from its final bytes. */
function expectedReplies(message: Uint8Array): number {
  if (message.length < 16) return 0;
  const opcode = new DataView(message.buffer, message.byteOffset).getUint32(4, true);
  return isNoReply(opcode) ? 0 : 1;
}

async function round(seed: number, kind: "memfs" | "async" | "chaos", count: number): Promise<{ logs: LogLine[]; ok: number; errors: Map<number, number> }> {
  const rng = prng(seed);
  const mem = new MemFs({ capacity: "4MiB", maxInodes: 300, rootMode: 0o777 });
  const fs = kind === "memfs" ? mem : kind === "async" ? promising(mem) : chaos(mem, prng(seed ^ 0x5eed));
  const logs: LogLine[] = [];
  const replies = new Map<bigint, number>();
  const errors = new Map<number, number>();
  let ok = 0;
  const known: Known = { uniques: [], inos: [1], handles: [], sent: new Map() };
  const server = new FuseServer(fs, (head, data) => {
    const reply = parseReply(joinReply(head, data));
    expect(reply.length).toBe(head.length + (data?.length ?? 0));
    expect(reply.error).toBeLessThanOrEqual(0);
    expect(reply.error).toBeGreaterThan(-4096);
    if (reply.error !== 0) expect(reply.length).toBe(16);
    if (reply.error === 0) {
      ok++;
      learn(known, reply);
    }
    else errors.set(-reply.error, (errors.get(-reply.error) ?? 0) + 1);
    replies.set(reply.unique, (replies.get(reply.unique) ?? 0) + 1);
  }, { logger: collectingLogger(logs) });

  server.handle(request(Op.INIT, new Bytes().u32(7).u32(45).u32(131072).u32(0x73fffffb).u32(0x5fd).zeros(44), { unique: 1 }));
  await tick();
  expect(replies.get(1n)).toBe(1);

  let unique = 2;
  let lent = new Uint8Array(4096);
  for (let batch = 0; batch < count / 100; batch++) {
    const wanted = new Map<number, number>();
    for (let i = 0; i < 100; i++) {
      unique += 2;
      const opcode = pick(rng, OPCODES);
      const { nodeid, body } = generate(rng, opcode, known);
      known.sent.set(unique, { opcode, nodeid });
      const valid = request(opcode, body, {
        unique,
        nodeid,
        uid: pick(rng, [0, 0, 1000]),
        gid: pick(rng, [0, 1000]),
        ext: int(rng, 10) === 0 ? new Bytes().u32(16).u32(32).u32(1).u32(int(rng, 2000)).build() : undefined,
      });
      const message = rng() < 0.5 ? valid : mutate(rng, valid);
      if (message.length >= 16) new DataView(message.buffer, message.byteOffset).setBigUint64(8, BigInt(unique), true);
      wanted.set(unique, expectedReplies(message));
      known.uniques.push(unique);
      if (kind === "async") {
        // Lent as /dev/fuse lends them: in one buffer, overwritten right after.
        if (message.length > lent.length) lent = new Uint8Array(message.length);
        lent.set(message);
        expect(() => server.handleLent(lent.subarray(0, message.length))).not.toThrow();
        lent.fill(0xa5);
      } else expect(() => server.handle(message)).not.toThrow();
    }
    await tick();
    await tick();
    for (const [u, n] of wanted) expect(replies.get(BigInt(u)) ?? 0, `replies to unique ${u}`).toBe(n);
  }
  expect(server.inflight).toBe(0);
  await server.close();
  return { logs, ok, errors };
}

describe("fuzz", () => {
  it("20,000 valid and mutated requests: no throw, one reply each, nothing left in flight", async () => {
    const kinds = ["memfs", "async", "chaos"] as const;
    let warnings = 0;
    let ok = 0;
    const errnos = new Set<number>();
    for (let r = 0; r < 20; r++) {
      const result = await round(0xf00d + r, kinds[r % 3]!, 1000);
      warnings += result.logs.filter((l) => l.level === "warn").length;
      ok += result.ok;
      for (const errno of result.errors.keys()) errnos.add(errno);
    }
    // The requests reach the backend and succeed often enough to exercise the encoders...
    expect(ok).toBeGreaterThan(1500);
    // ...and fail in many ways: EINVAL (malformed), ENOSYS, EIO (bugs), the backends' own errnos.
    expect(errnos.size).toBeGreaterThan(10);
    // Malformed requests were seen and logged (rate-limited per server).
    expect(warnings).toBeGreaterThan(100);
  });

  it("random INIT bodies: exactly one reply each, never a throw", () => {
    const rng = prng(7);
    for (let i = 0; i < 500; i++) {
      let replies = 0;
      const server = new FuseServer(new MemFs(), () => replies++, { logger: collectingLogger([]) });
      const body = new Bytes();
      for (let n = int(rng, 80); n > 0; n--) body.u8(int(rng, 256));
      const message = request(Op.INIT, body, { unique: 2 });
      if (rng() < 0.5 && message.length >= 48) new DataView(message.buffer).setUint32(40, pick(rng, [6, 7, 8]), true);
      expect(() => server.handle(message)).not.toThrow();
      expect(replies).toBe(1);
    }
  });
});
