import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import * as native from "../index.js";
import { thrown } from "./helpers.js";

const c = native.constants;
const addonDir = path.resolve(import.meta.dirname, "..");

describe("argument validation", () => {
  it("wrong types throw TypeError ERR_INVALID_ARG_TYPE", () => {
    const cases: Array<() => unknown> = [
      () => native.fstatat("3" as unknown as number, "x"),
      () => native.fstatat(c.AT_FDCWD, 42 as unknown as string),
      () => native.fstatat(c.AT_FDCWD, {} as unknown as string),
      () => native.fstatat(c.AT_FDCWD, new Uint16Array(2) as unknown as Uint8Array),
      () => native.getxattr("/", undefined as unknown as string),
      () => native.setxattr("/tmp", "user.a", "not bytes" as unknown as Uint8Array),
      () => native.openat2(c.AT_FDCWD, "/", 5 as unknown as native.OpenHow),
      () => native.openat2(c.AT_FDCWD, "/", { flags: "0" as unknown as number }),
      () => native.lseek(0, "1" as unknown as number, c.SEEK_SET),
      () => native.mknodat(c.AT_FDCWD, "/tmp/x", c.S_IFIFO, "0" as unknown as number),
      () => native.utimensat(c.AT_FDCWD, "/tmp", "now" as unknown as native.TimeArg, c.UTIME_OMIT),
      () => native.getdents(Symbol("fd") as unknown as number),
      () => native.close(null as unknown as number),
      () => (native.fstat as (...args: unknown[]) => unknown)(),
    ];
    for (const call of cases) {
      const err = thrown(call);
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe("ERR_INVALID_ARG_TYPE");
    }
    expect(thrown(() => native.fstatat(c.AT_FDCWD, 42 as unknown as string)).message).toBe(
      'The "path" argument must be of type string or an instance of Uint8Array. Received type number (42)',
    );
  });

  it("NUL bytes inside paths and names throw TypeError ERR_INVALID_ARG_VALUE", () => {
    for (const call of [
      () => native.fstatat(c.AT_FDCWD, "a\0b"),
      () => native.openat2(c.AT_FDCWD, Buffer.from([0x61, 0x00])),
      () => native.getxattr("/tmp", "user.\0"),
      () => native.symlinkat("t\0", c.AT_FDCWD, "/tmp/x"),
      () => native.mount(null, "/tmp", null, 0, "a\0b"),
    ]) {
      const err = thrown(call);
      expect(err).toBeInstanceOf(TypeError);
      expect(err.code).toBe("ERR_INVALID_ARG_VALUE");
    }
  });

  it("non-integers and out-of-range numbers throw RangeError ERR_OUT_OF_RANGE", () => {
    for (const call of [
      () => native.fstat(1.5),
      () => native.fstat(NaN),
      () => native.fstat(2 ** 31),
      () => native.lseek(0, 2 ** 53, c.SEEK_SET),
      () => native.lseek(0, 2n ** 64n, c.SEEK_SET),
      () => native.fallocate(0, 0, -1, 1),
      () => native.fallocate(0, 0, 0, Infinity),
      () => native.copyFileRange(0, 0.5, 1, null, 1),
      () => native.getdents(0, 0),
      () => native.fchownat(c.AT_FDCWD, "/tmp", -2, 0),
      () => native.utimensat(c.AT_FDCWD, "/tmp", { sec: 0, nsec: 1e9 }, c.UTIME_OMIT),
      () => native.makedev(-1, 0),
    ]) {
      const err = thrown(call);
      expect(err).toBeInstanceOf(RangeError);
      expect(err.code).toBe("ERR_OUT_OF_RANGE");
    }
    expect(thrown(() => native.fstat(1.5)).message).toBe(
      'The value of "fd" is out of range. It must be an integer. Received 1.5',
    );
  });

  it("a plain number that is not UTIME_NOW/UTIME_OMIT is rejected as a time", () => {
    const err = thrown(() => native.utimensat(c.AT_FDCWD, "/tmp", 5 as unknown as native.TimeArg, c.UTIME_OMIT));
    expect(err).toBeInstanceOf(TypeError);
    expect(err.code).toBe("ERR_INVALID_ARG_VALUE");
  });

  it("exceptions thrown by getters propagate unchanged", () => {
    const how = {
      get flags(): number {
        throw new Error("boom from getter");
      },
    };
    expect(() => native.openat2(c.AT_FDCWD, "/", how)).toThrow("boom from getter");
  });

  it("the process survives a burst of garbage calls", () => {
    const junk: unknown[] = [undefined, null, true, -1, 2 ** 60, 1n, "", "x", Symbol("s"), {}, [], () => 0, new Uint8Array(1), new Float64Array(1)];
    const fns = Object.entries(native).filter(
      (entry): entry is [string, (...args: unknown[]) => unknown] =>
        // tscKhz(Async) takes no arguments and measures for 0.1 s a call.
        typeof entry[1] === "function" && !entry[0].startsWith("tscKhz") && !/^(mount|umount2|close|mknodat|unlinkat|fchownat|fchmodat|renameat2|linkat|symlinkat|mkdirat|utimensat|setxattr|lsetxattr|fsetxattr|removexattr|lremovexattr|fremovexattr|fallocate|unpin|createPinned)/.test(entry[0]),
    );
    let calls = 0;
    for (const [, fn] of fns) {
      for (const a of junk) {
        for (const b of junk) {
          try {
            const r = fn(a, b, a);
            if (r instanceof Promise) r.catch(() => undefined);
          } catch {
            // expected
          }
          calls++;
        }
      }
    }
    expect(calls).toBeGreaterThan(1000);
  });
});

describe("module surface", () => {
  it("version() is the package version", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(addonDir, "package.json"), "utf8")) as { version: string };
    expect(native.version()).toBe(pkg.version);
  });

  it("every sync export has an async twin", () => {
    const names = Object.keys(native);
    const asyncNames = names.filter((n) => n.endsWith("Async"));
    expect(asyncNames.length).toBe(43);
    for (const n of asyncNames) expect(typeof (native as Record<string, unknown>)[n.slice(0, -5)]).toBe("function");
  });

  it("constants are frozen and agree with node's fs.constants / os.constants", () => {
    expect(Object.isFrozen(c)).toBe(true);
    const fsc = fs.constants as Record<string, number>;
    let compared = 0;
    for (const [name, value] of Object.entries(c)) {
      if (name in fsc && name !== "O_LARGEFILE") {
        expect([name, value]).toEqual([name, fsc[name]]);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(20);
    expect(c.UTIME_NOW).toBe(native.UTIME_NOW);
    expect(c.UTIME_OMIT).toBe(native.UTIME_OMIT);
    expect(native.UTIME_NOW).toBe(2 ** 30 - 1);
    expect(c.AT_FDCWD).toBe(-100);
    expect([c.RESOLVE_NO_XDEV, c.RESOLVE_NO_MAGICLINKS, c.RESOLVE_NO_SYMLINKS, c.RESOLVE_BENEATH, c.RESOLVE_IN_ROOT, c.RESOLVE_CACHED]).toEqual([1, 2, 4, 8, 0x10, 0x20]);
  });

  it("named imports work from ESM through the CJS loader", () => {
    const script = `import { version, openat2, constants } from ${JSON.stringify(path.join(addonDir, "index.js"))};
      console.log(version(), typeof openat2, constants.RESOLVE_BENEATH);`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(`${native.version()} function 8`);
  });

  it("the package resolves by name through its exports map", () => {
    const r = spawnSync(process.execPath, ["-e", "console.log(typeof require('@msb/native').getdents, require('@msb/native/package.json').name)"], {
      cwd: addonDir,
      encoding: "utf8",
    });
    expect(r.stdout.trim()).toBe("function @msb/native");
  });

  it("the loader names the missing file and the build command", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "msb-native-loader-"));
    try {
      fs.copyFileSync(path.join(addonDir, "index.js"), path.join(dir, "index.js"));
      const r = spawnSync(process.execPath, ["-e", `require(${JSON.stringify(path.join(dir, "index.js"))})`], { encoding: "utf8" });
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(path.join(dir, "msb-native.linux-x64-gnu.node"));
      expect(r.stderr).toContain("pnpm --filter @msb/native build");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
