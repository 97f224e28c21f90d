import { describe, expect, it } from "vitest";
import { SetattrValid } from "./constants.js";
import { nowTimespec, setattrRequest, toTimespec } from "./setattr.js";

describe("setattrRequest", () => {
  it("sets exactly the bits of the given fields", () => {
    expect(setattrRequest({}).valid).toBe(0);
    expect(setattrRequest({ mode: 0o644 })).toMatchObject({ valid: SetattrValid.MODE, mode: 0o644 });
    expect(setattrRequest({ uid: 0, gid: 5 }).valid).toBe(SetattrValid.UID | SetattrValid.GID);
    expect(setattrRequest({ size: 0 }).valid).toBe(SetattrValid.SIZE);
    expect(setattrRequest({ fh: 3, killSuidgid: true }).valid).toBe(SetattrValid.FH | SetattrValid.KILL_SUIDGID);
  });

  it("marks 'now' times with the *_NOW bits", () => {
    const req = setattrRequest({ atime: "now", mtime: { sec: 5, nsec: 6 } });
    expect(req.valid).toBe(SetattrValid.ATIME | SetattrValid.ATIME_NOW | SetattrValid.MTIME);
    expect(req.mtime).toEqual({ sec: 5, nsec: 6 });
  });
});

describe("time conversions", () => {
  it("converts Dates, seconds and timespecs", () => {
    expect(toTimespec(new Date(1500))).toEqual({ sec: 1, nsec: 500_000_000 });
    expect(toTimespec(new Date(-1500))).toEqual({ sec: -2, nsec: 500_000_000 });
    expect(toTimespec(2.25)).toEqual({ sec: 2, nsec: 250_000_000 });
    const ts = { sec: 1, nsec: 2 };
    expect(toTimespec(ts)).toBe(ts);
  });

  it("reads the wall clock to the microsecond, nanoseconds in range", () => {
    const before = Date.now() / 1000;
    const now = nowTimespec();
    const after = Date.now() / 1000;
    // Date.now truncates to the millisecond; the wall clock may also be stepped between the reads.
    expect(now.sec + now.nsec / 1e9).toBeGreaterThanOrEqual(before - 1);
    expect(now.sec + now.nsec / 1e9).toBeLessThanOrEqual(after + 1);
    expect(Number.isInteger(now.sec) && Number.isInteger(now.nsec / 1000)).toBe(true);
    expect(now.nsec).toBeGreaterThanOrEqual(0);
    expect(now.nsec).toBeLessThan(1e9);
  });
});
