import { describe, expect, it } from "vitest";
import { checkCount, isCount, isTimespec, isU32 } from "./args.js";

describe("argument checks", () => {
  it("tells counts, 32-bit ids and timespecs from garbage", () => {
    expect([0, 5, 2 ** 53 - 1].every(isCount)).toBe(true);
    expect([-1, 1.5, 2 ** 53, NaN, "3", undefined].some(isCount)).toBe(false);
    expect([0, 0xffff_ffff].every(isU32)).toBe(true);
    expect([-1, 2 ** 32, 0.5].some(isU32)).toBe(false);
    expect(isTimespec({ sec: -5, nsec: 999_999_999 })).toBe(true);
    expect([{ sec: 1, nsec: 1e9 }, { sec: 1.5, nsec: 0 }, { sec: 1 }, null, 5].some(isTimespec)).toBe(false);
  });

  it("throws EINVAL naming the argument", () => {
    expect(() => checkCount(-1, "offset", "read", 7)).toThrow(/EINVAL.*read \(inode 7\): offset -1/);
    expect(() => checkCount(3, "offset", "read")).not.toThrow();
  });
});
