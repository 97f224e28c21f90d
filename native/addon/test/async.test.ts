import fs from "node:fs";
import { describe, expect, it } from "vitest";
import {
  close,
  constants,
  fstatat,
  fstatatAsync,
  mknodat,
  openat2Async,
  readlinkatAsync,
  setxattrAsync,
} from "../index.js";
import { rejected, thrown, useTmpDir } from "./helpers.js";

const c = constants;

describe("async forms", () => {
  const tmp = useTmpDir();

  it("run on the threadpool: the event loop keeps turning while a call blocks", async () => {
    for (let i = 0; i < 8; i++) fs.writeFileSync(tmp.join(`f${i}`), String(i));
    const fifo = tmp.join("fifo");
    mknodat(c.AT_FDCWD, fifo, c.S_IFIFO | 0o600);

    // Opening a FIFO for reading blocks until a writer appears: run
    // synchronously this would hang the process.
    let fifoSettled = false;
    const fifoOpen = openat2Async(c.AT_FDCWD, fifo, { flags: c.O_RDONLY }).finally(() => {
      fifoSettled = true;
    });
    const stats = Promise.all(Array.from({ length: 64 }, (_, i) => fstatatAsync(c.AT_FDCWD, tmp.join(`f${i % 8}`))));

    let writer: number | undefined;
    try {
      let ticks = 0;
      await new Promise<void>((resolve) => setImmediate(resolve)).then(() => ticks++);
      await new Promise<void>((resolve) => setTimeout(resolve, 0)).then(() => ticks++);
      expect(ticks).toBe(2);
      expect(fifoSettled).toBe(false);

      const results = await stats;
      expect(results).toHaveLength(64);
      results.forEach((st, i) => expect(st.ino).toBe(fstatat(c.AT_FDCWD, tmp.join(`f${i % 8}`)).ino));
      expect(fifoSettled).toBe(false);
    } finally {
      // O_RDWR on a FIFO never blocks and provides the writer the reader
      // waits for (also unblocks the threadpool if an assertion failed).
      writer = fs.openSync(fifo, fs.constants.O_RDWR);
    }
    try {
      const fd = await fifoOpen;
      expect(fd).toBeGreaterThan(2);
      close(fd);
    } finally {
      fs.closeSync(writer);
    }
  });

  it("reject with the same error shape as the sync forms throw", async () => {
    const missing = tmp.join("missing");
    const sync = thrown(() => fstatat(c.AT_FDCWD, missing));
    const async = await rejected(fstatatAsync(c.AT_FDCWD, missing));
    expect(async).toBeInstanceOf(Error);
    for (const key of ["message", "code", "errno", "syscall", "path"] as const) {
      expect(async[key]).toEqual(sync[key]);
    }
    expect(async).toMatchObject({ code: "ENOENT", errno: -2, syscall: "statx", path: missing });
  });

  it("reject (not throw) on bad arguments, with the same TypeError", async () => {
    const p = fstatatAsync("nope" as unknown as number, "x");
    expect(p).toBeInstanceOf(Promise);
    const err = await rejected(p);
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe("ERR_INVALID_ARG_TYPE");
    expect((await rejected(readlinkatAsync(c.AT_FDCWD, "a\0b"))).code).toBe("ERR_INVALID_ARG_VALUE");
    expect(await rejected(setxattrAsync(tmp.join("x"), "user.a", "str" as unknown as Uint8Array))).toBeInstanceOf(TypeError);
  });

  it("copy their arguments before queueing: mutating a buffer afterwards changes nothing", async () => {
    const name = Buffer.from(tmp.join("f0"));
    fs.writeFileSync(tmp.join("f0"), "");
    const value = Buffer.from("original");
    const pending = setxattrAsync(name, "user.copy", value);
    name.fill(0x41);
    value.fill(0x42);
    await pending;
    expect(fs.existsSync(tmp.join("f0"))).toBe(true);
    const { getxattr } = await import("../index.js");
    expect(getxattr(tmp.join("f0"), "user.copy").toString()).toBe("original");
  });

  it("many concurrent calls all settle", async () => {
    fs.writeFileSync(tmp.join("f"), "");
    const ok = Array.from({ length: 200 }, () => fstatatAsync(c.AT_FDCWD, tmp.join("f")));
    const bad = Array.from({ length: 50 }, (_, i) => fstatatAsync(c.AT_FDCWD, tmp.join(`nope${i}`)).catch((e: unknown) => e));
    const [stats, errors] = await Promise.all([Promise.all(ok), Promise.all(bad)]);
    expect(new Set(stats.map((s) => s.ino)).size).toBe(1);
    expect(errors.every((e) => e instanceof Error && (e as NodeJS.ErrnoException).code === "ENOENT")).toBe(true);
  });
});
