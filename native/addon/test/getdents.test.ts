import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { close, constants, getdents, getdentsAsync, getdentsRaw, lseek, openat, parseDirents } from "../index.js";
import type { Dirent } from "../index.js";
import { expectErrno, useTmpDir } from "./helpers.js";

const c = constants;

/** Calls getdents until it returns an empty array. */
function readAll(fd: number, bufferSize?: number): Dirent[] {
  const all: Dirent[] = [];
  for (;;) {
    const batch = getdents(fd, bufferSize);
    if (batch.length === 0) return all;
    all.push(...batch);
  }
}

const latin1 = (d: Dirent): string => d.name.toString("latin1");

describe("getdents", () => {
  const tmp = useTmpDir();
  let fd = -1;
  const odd = Buffer.from([0x6f, 0x64, 0x64, 0xff, 0xfe, 0x80]); // "odd\xff\xfe\x80"

  beforeEach(() => {
    for (let i = 0; i < 60; i++) fs.writeFileSync(tmp.join(`file-${i}`), "");
    fs.mkdirSync(tmp.join("dir"));
    fs.symlinkSync("file-0", tmp.join("link"));
    fs.writeFileSync(Buffer.from(path.join(tmp.dir, odd.toString("latin1")), "latin1"), "");
    fd = openat(c.AT_FDCWD, tmp.dir, c.O_RDONLY | c.O_DIRECTORY);
  });

  afterEach(() => {
    close(fd);
  });

  it("lists every entry with bigint ino/off, DT_* types and names as bytes", () => {
    const entries = readAll(fd);
    const names = entries.map(latin1).sort();
    const expected = [".", "..", "dir", "link", odd.toString("latin1"), ...Array.from({ length: 60 }, (_, i) => `file-${i}`)].sort();
    expect(names).toEqual(expected);
    const byName = new Map(entries.map((e) => [latin1(e), e]));
    expect(byName.get("dir")?.type).toBe(c.DT_DIR);
    expect(byName.get("link")?.type).toBe(c.DT_LNK);
    expect(byName.get("file-7")?.type).toBe(c.DT_REG);
    const oddEntry = byName.get(odd.toString("latin1"));
    expect(oddEntry?.name).toEqual(odd);
    expect(Buffer.isBuffer(oddEntry?.name)).toBe(true);
    for (const e of entries) {
      expect(typeof e.ino).toBe("bigint");
      expect(typeof e.off).toBe("bigint");
    }
    expect(byName.get("file-7")?.ino).toBe(fs.lstatSync(tmp.join("file-7"), { bigint: true }).ino);
    // At the end it keeps returning [].
    expect(getdents(fd)).toEqual([]);
  });

  it("small buffers return fewer entries per call; a too-small one is EINVAL", () => {
    const first = getdents(fd, 128);
    expect(first.length).toBeGreaterThan(0);
    expect(first.length).toBeLessThan(10);
    expect(first.length + readAll(fd, 256).length).toBe(65);
    // At the end nothing needs to fit; from the start even "." does not fit in 8 bytes.
    expect(getdents(fd, 8)).toEqual([]);
    lseek(fd, 0, c.SEEK_SET);
    expectErrno(() => getdents(fd, 8), "EINVAL", "getdents64");
  });

  it("resumes after an entry by seeking to its off cookie", () => {
    const all = readAll(fd, 512);
    const k = 20;
    const cookie = all[k]?.off ?? -1n;
    expect(lseek(fd, cookie, c.SEEK_SET)).toBe(cookie);
    const rest = readAll(fd, 512);
    expect(rest.map(latin1)).toEqual(all.slice(k + 1).map(latin1));
    // Rewinding to 0 lists everything again.
    expect(lseek(fd, 0, c.SEEK_SET)).toBe(0);
    expect(readAll(fd).length).toBe(all.length);
  });

  it("async form and errors", async () => {
    const batch = await getdentsAsync(fd);
    expect(batch.length).toBe(65);
    const file = openat(c.AT_FDCWD, tmp.join("file-1"));
    try {
      expectErrno(() => getdents(file), "ENOTDIR", "getdents64");
    } finally {
      close(file);
    }
    expectErrno(() => getdents(1_000_000), "EBADF", "getdents64");
  });
});

describe("getdentsRaw + parseDirents", () => {
  it("returns the kernel's records, which parseDirents reads like getdents", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "msb-dents-raw-"));
    try {
      for (const name of ["a", "bb", "ccc"]) fs.writeFileSync(path.join(dir, name), "");
      const fd = fs.openSync(dir, "r");
      try {
        const raw = getdentsRaw(fd, 4096);
        const parsed = parseDirents(raw).map((d) => d.name.toString()).sort();
        expect(parsed).toEqual([".", "..", "a", "bb", "ccc"]);
        // A plain Uint8Array view of the records gives plain Uint8Array names, views into it.
        const plain = new Uint8Array(raw.buffer, raw.byteOffset, raw.length);
        const plainNames = parseDirents(plain).map((d) => d.name);
        expect(plainNames.every((name) => !Buffer.isBuffer(name) && name.buffer === raw.buffer)).toBe(true);
        expect(plainNames.map((name) => Buffer.from(name).toString()).sort()).toEqual(parsed);
        expect(getdentsRaw(fd, 4096).length).toBe(0);
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("stops at a malformed record instead of reading past it", () => {
    const records = new Uint8Array(48);
    const view = new DataView(records.buffer);
    view.setBigUint64(0, 7n, true);
    view.setBigInt64(8, 1n, true);
    view.setUint16(16, 24, true);
    records[18] = 8;
    records.set([0x78, 0], 19);
    view.setUint16(24 + 16, 500, true); // claims more than there is
    const parsed = parseDirents(records);
    expect(parsed).toHaveLength(1);
    expect(parsed[0]).toMatchObject({ ino: 7n, off: 1n, type: 8 });
    expect(Buffer.from(parsed[0]!.name).toString()).toBe("x");
  });
});
