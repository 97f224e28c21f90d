import { describe, expect, it } from "vitest";
import { Bytes, fromHex, hex, initRequest, request } from "./client.fixture.js";
import { HeaderError, ProtocolError, decodeContext, decodeHeader, decodeRequest, type Request } from "./decode.js";
import { EncodeError, encodeDirents, encodeEntry, encodeError, encodeInit, encodeOpen, encodeStatfs } from "./encode.js";
import { InitFlag, Op } from "./protocol.js";

const to = { uniqueLo: 42, uniqueHi: 0 };

function decode(message: Uint8Array, setxattrExt = true): Request {
  return decodeRequest(message, decodeHeader(message), { setxattrExt });
}

const utf8 = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

describe("request decoding (golden bytes)", () => {
  it("LOOKUP: header fields and the NUL-terminated name", () => {
    const message = fromHex(`
      2e000000 01000000 2a00000000000000 0100000000000000
      e8030000 e8030000 d2040000 0000 0000
      68656c6c6f00`);
    const header = decodeHeader(message);
    expect(header).toMatchObject({ length: 46, opcode: Op.LOOKUP, unique: 42, nodeid: 1, uid: 1000, gid: 1000, pid: 1234, extLength: 0 });
    const req = decode(message);
    expect(req.kind).toBe("lookup");
    expect(utf8((req as { name: Uint8Array }).name)).toBe("hello");
    expect(decodeContext(message, header)).toEqual({ uid: 1000, gid: 1000, pid: 1234 });
  });

  it("CREATE with a supplementary-groups extension (7.38 total_extlen)", () => {
    const message = fromHex(`
      4a000000 23000000 0400000000000000 0100000000000000
      e8030000 e8030000 d2040000 0200 0000
      41820000 a4810000 12000000 00000000 6600
      10000000 20000000 01000000 64000000`);
    const header = decodeHeader(message);
    expect(header.extLength).toBe(16);
    expect(decode(message)).toMatchObject({ kind: "create", flags: 0x8241, mode: 0o100644, umask: 0o022 });
    expect(utf8((decode(message) as { name: Uint8Array }).name)).toBe("f");
    expect(decodeContext(message, header)).toEqual({ uid: 1000, gid: 1000, pid: 1234, groups: [100] });
  });

  it("skips extensions it does not know (security contexts) and keeps the groups", () => {
    const secctx = new Bytes().u32(24).u32(1).u32(16).u32(0).cstr("ctx").zeros(4).build();
    const groups = new Bytes().u32(16).u32(32).u32(1).u32(7).build();
    const ext = new Uint8Array([...secctx, ...groups]);
    const message = request(Op.MKDIR, new Bytes().u32(0o755).u32(0o022).cstr("d").zeros(6), { unique: 8, ext });
    expect(decodeContext(message, decodeHeader(message)).groups).toEqual([7]);
  });

  it("SETXATTR in the 8-byte form and in the 16-byte FUSE_SETXATTR_EXT form", () => {
    const short = fromHex(`
      3a000000 15000000 0600000000000000 0500000000000000
      00000000 00000000 01000000 0000 0000
      03000000 01000000 757365722e7800 616263`);
    expect(decode(short, false)).toMatchObject({ kind: "setxattr", flags: 1 });
    const r = decode(short, false) as { name: Uint8Array; value: Uint8Array };
    expect([utf8(r.name), utf8(r.value)]).toEqual(["user.x", "abc"]);

    const long = request(Op.SETXATTR, new Bytes().u32(3).u32(2).u32(1).u32(0).cstr("user.y").raw([1, 2, 3]), { unique: 6 });
    const l = decode(long, true) as { name: Uint8Array; value: Uint8Array; flags: number };
    expect([utf8(l.name), [...l.value], l.flags]).toEqual(["user.y", [1, 2, 3], 2]);
    // The same bytes read as the short form have no NUL where the name should end in time.
    expect(() => decode(short, true)).toThrow(ProtocolError);
  });

  it("WRITE: the data is the `size` bytes after fuse_write_in", () => {
    const message = request(Op.WRITE, new Bytes().u64(9).u64(4096).u32(4).u32(1).u64(0).u32(0o2).u32(0).raw([1, 2, 3, 4]), { unique: 10, nodeid: 5 });
    expect(decode(message)).toEqual({ kind: "write", fh: 9, offset: 4096, flags: 1, data: new Uint8Array([1, 2, 3, 4]) });
    const short = request(Op.WRITE, new Bytes().u64(9).u64(0).u32(5).u32(0).u64(0).u32(0).u32(0).raw([1, 2, 3, 4]), { unique: 10 });
    expect(() => decode(short)).toThrow(/write data/);
  });

  it("INIT as Linux 6.18 sends it, with flags2", () => {
    const req = decode(initRequest());
    expect(req).toEqual({ kind: "init", init: { major: 7, minor: 45, maxReadahead: 131072, flags: 0x73fffffbn | (0x5fdn << 32n) } });
    // An old kernel's 16-byte fuse_init_in has no flags2.
    const old = decode(request(Op.INIT, new Bytes().u32(7).u32(31).u32(65536).u32(0x1), { unique: 2 }));
    expect(old).toEqual({ kind: "init", init: { major: 7, minor: 31, maxReadahead: 65536, flags: 1n } });
  });

  it("BATCH_FORGET: pairs of nodeid and nlookup", () => {
    const message = request(Op.BATCH_FORGET, new Bytes().u32(2).u32(0).u64(5).u64(1).u64(6).u64(3), { unique: 0 });
    expect(decode(message)).toEqual({ kind: "batchForget", items: [[5, 1], [6, 3]], declared: 2 });
  });

  it("rejects what does not fit: short header, wrong len, truncated struct, missing NUL, bad extension", () => {
    expect(() => decodeHeader(new Uint8Array(39))).toThrow(ProtocolError);
    const lookup = request(Op.LOOKUP, new Bytes().cstr("x"), { unique: 4 });
    const longer = new Uint8Array([...lookup, 0]);
    expect(() => decodeHeader(longer)).toThrow(HeaderError);
    expect(() => decode(request(Op.GETATTR, new Bytes().u32(0), { unique: 4 }))).toThrow(/fuse_getattr_in/);
    expect(() => decode(request(Op.LOOKUP, new Bytes().raw([0x61, 0x62]), { unique: 4 }))).toThrow(/NUL/);
    expect(() => decode(request(Op.RENAME, new Bytes().u64(1).cstr("a").raw([0x62]), { unique: 4 }))).toThrow(/newname/);
    const badExt = request(Op.MKDIR, new Bytes().u32(0).u32(0).cstr("d"), { unique: 4, ext: new Bytes().u32(64).u32(32).build() });
    expect(() => decodeContext(badExt, decodeHeader(badExt))).toThrow(/bad size/);
    const tooMany = request(Op.MKDIR, new Bytes().u32(0).u32(0).cstr("d"), { unique: 4, ext: new Bytes().u32(16).u32(32).u32(5).u32(1).build() });
    expect(() => decodeContext(tooMany, decodeHeader(tooMany))).toThrow(/5 groups/);
    // A time SETATTR sets must have nanoseconds below 10^9 (ATIME set, ATIME_NOW not).
    const setattr = (valid: number, nsec: number) => request(Op.SETATTR, new Bytes().u32(valid).zeros(52).u32(nsec).zeros(28), { unique: 4 });
    expect(() => decode(setattr(1 << 4, 1_000_000_000))).toThrow(/atimensec/);
    expect(decode(setattr((1 << 4) | (1 << 7), 1_000_000_000)).kind).toBe("setattr");
    expect(decode(setattr(0, 1_000_000_000)).kind).toBe("setattr");
    // total_extlen larger than the message
    const lying = request(Op.LOOKUP, new Bytes().cstr("x"), { unique: 4 });
    new DataView(lying.buffer).setUint16(36, 100, true);
    expect(() => decodeHeader(lying)).toThrow(/total_extlen/);
  });

  it("maps unknown and unserved opcodes to `unsupported`", () => {
    for (const opcode of [Op.GETLK, Op.SETLK, Op.SETLKW, Op.BMAP, Op.IOCTL, Op.POLL, Op.SETUPMAPPING, Op.REMOVEMAPPING, Op.SYNCFS, Op.TMPFILE, Op.STATX, 7, 19, 999, Op.CUSE_INIT]) {
      expect(decode(request(opcode, new Bytes().zeros(64), { unique: 4 })).kind).toBe("unsupported");
    }
  });
});

const attr = {
  ino: 5,
  size: 6,
  blocks: 1,
  atime: { sec: 1700000000, nsec: 1 },
  mtime: { sec: 1700000001, nsec: 2 },
  ctime: { sec: -1, nsec: 3 },
  mode: 0o100644,
  nlink: 1,
  uid: 1000,
  gid: 1000,
  rdev: 0,
  blksize: 4096,
};

describe("reply encoding (golden bytes)", () => {
  it("an error is fuse_out_header alone with -errno, echoing a 64-bit unique exactly", () => {
    expect(hex(encodeError(to, 2))).toBe("10000000feffffff2a00000000000000");
    expect(hex(encodeError({ uniqueLo: 0x05060708, uniqueHi: 0x01020304 }, 38))).toBe("10000000daffffff0807060504030201");
  });

  it("fuse_entry_out: timeouts split into seconds and nanoseconds, negative times as two's complement", () => {
    const bytes = encodeEntry(to, { ino: 5, generation: 1, attr }, { entry: 1, attr: 1.5 });
    expect(hex(bytes)).toBe(
      hex(
        fromHex(`
          90000000 00000000 2a00000000000000
          0500000000000000 0100000000000000 0100000000000000 0100000000000000 00000000 0065cd1d
          0500000000000000 0600000000000000 0100000000000000
          00f1536500000000 01f1536500000000 ffffffffffffffff
          01000000 02000000 03000000 a4810000 01000000 e8030000 e8030000 00000000 00100000 00000000`),
      ),
    );
    // The entry's own timeouts win over the policy's.
    const own = encodeEntry(to, { ino: 5, generation: 0, attr, entryTimeout: 7, attrTimeout: 0 }, { entry: 1, attr: 1 });
    expect(hex(own.subarray(32, 48))).toBe("07000000000000000000000000000000");
  });

  it("fuse_open_out", () => {
    expect(hex(encodeOpen(to, 7, 2))).toBe("20000000000000002a00000000000000" + "0700000000000000" + "02000000" + "00000000");
    // FOPEN_PASSTHROUGH names its backing file in the last field.
    expect(hex(encodeOpen(to, 7, 0x80, 3))).toBe("20000000000000002a00000000000000" + "0700000000000000" + "80000000" + "03000000");
  });

  it("fuse_kstatfs with zeroed padding and spare", () => {
    const bytes = encodeStatfs(to, { blocks: 1000, bfree: 500, bavail: 400, files: 100, ffree: 50, bsize: 4096, namelen: 255, frsize: 4096 });
    expect(hex(bytes)).toBe(
      hex(
        fromHex(`
          60000000 00000000 2a00000000000000
          e803000000000000 f401000000000000 9001000000000000 6400000000000000 3200000000000000
          00100000 ff000000 00100000 00000000
          000000000000000000000000000000000000000000000000`),
      ),
    );
  });

  it("fuse_dirent records padded to 8 bytes, as many as fit", () => {
    const entries = [
      { ino: 1, offset: 1, type: 4, name: new Uint8Array([0x2e]) },
      { ino: 7, offset: 2, type: 8, name: new Uint8Array([0x61, 0x62]) },
    ];
    const all = encodeDirents(to, entries, 4096);
    expect(all.count).toBe(2);
    expect(hex(all.bytes)).toBe(
      hex(
        fromHex(`
          50000000 00000000 2a00000000000000
          0100000000000000 0100000000000000 01000000 04000000 2e00000000000000
          0700000000000000 0200000000000000 02000000 08000000 6162000000000000`),
      ),
    );
    const one = encodeDirents(to, entries, 40);
    expect(one.count).toBe(1);
    expect(one.bytes.length).toBe(16 + 32);
  });

  it("fuse_direntplus: entry_out then the dirent, 152 + name rounded up", () => {
    const entries = [{ ino: 5, offset: 3, type: 8, name: new Uint8Array([0x66]), entry: { ino: 5, generation: 0, attr } }];
    const { bytes, count } = encodeDirents(to, entries, 4096, { entry: 1, attr: 1 });
    expect(count).toBe(1);
    expect(bytes.length).toBe(16 + 160);
    expect(hex(bytes.subarray(16, 24))).toBe("0500000000000000");
    expect(hex(bytes.subarray(16 + 128))).toBe("0500000000000000" + "0300000000000000" + "01000000" + "08000000" + "6600000000000000");
  });

  it("fuse_init_out: flags split into flags and flags2, max_pages, time_gran, max_stack_depth", () => {
    const bytes = encodeInit(
      { uniqueLo: 2, uniqueHi: 0 },
      {
        major: 7,
        minor: 45,
        maxReadahead: 131072,
        flags: 0x70c4f029n | (0x54n << 32n),
        maxBackground: 64,
        congestionThreshold: 48,
        maxWrite: 1 << 20,
        timeGran: 1,
        maxPages: 256,
        maxStackDepth: 1,
      },
    );
    expect(hex(bytes)).toBe(
      hex(
        fromHex(`
          50000000 00000000 0200000000000000
          07000000 2d000000 00000200 29f0c470 4000 3000 00001000 01000000 0001 0000 54000000
          01000000 0000 00000000000000000000000000000000000000000000`),
      ),
    );
    // Before 7.23 the kernel expects the 24-byte fuse_init_out.
    const old = encodeInit({ uniqueLo: 2, uniqueHi: 0 }, { major: 7, minor: 22, maxReadahead: 0, flags: InitFlag.ASYNC_READ, maxBackground: 1, congestionThreshold: 1, maxWrite: 4096, timeGran: 1, maxPages: 1, maxStackDepth: 1 });
    expect(old.length).toBe(16 + 24);
  });

  it("refuses backend values that do not fit their field", () => {
    expect(() => encodeEntry(to, { ino: 5, generation: 0, attr: { ...attr, size: Number.NaN } }, { entry: 1, attr: 1 })).toThrow(EncodeError);
    expect(() => encodeEntry(to, { ino: -1, generation: 0, attr }, { entry: 1, attr: 1 })).toThrow(/entry.ino/);
    expect(() => encodeEntry(to, { ino: 5, generation: 0, attr: { ...attr, mode: 2 ** 32 } }, { entry: 1, attr: 1 })).toThrow(/attr.mode/);
    expect(() => encodeEntry(to, { ino: 5, generation: 0, attr: { ...attr, atime: { sec: 0, nsec: 1e9 } } }, { entry: 1, attr: 1 })).toThrow(/nsec/);
    expect(() => encodeDirents(to, [{ ino: 1, offset: 1, type: 8, name: new TextEncoder().encode("a/b") }], 4096)).toThrow(/name/);
    expect(() => encodeDirents(to, [{ ino: 1, offset: 1, type: 8, name: new Uint8Array(0) }], 4096)).toThrow(/name/);
  });
});
