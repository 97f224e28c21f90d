import { describe, expect, it } from "vitest";
import { ByteSlab, bytesKey } from "./bytes.js";

describe("bytesKey", () => {
  it("gives every byte string its own key and back", () => {
    const slab = new ByteSlab();
    const all = new Uint8Array(256).map((_, i) => i);
    expect(bytesKey(all)).toHaveLength(256);
    expect(slab.keyBytes(bytesKey(all))).toEqual(all);
    expect(bytesKey(new Uint8Array([0xc3, 0xa9]))).not.toBe(bytesKey(new Uint8Array([0xe9])));
    const long = new Uint8Array(20_000).map((_, i) => i * 7);
    expect(slab.keyBytes(bytesKey(long))).toEqual(long);
  });
});

describe("ByteSlab", () => {
  it("hands out separate ranges, and plain Uint8Arrays for large sizes", () => {
    const slab = new ByteSlab();
    const a = slab.take(100).fill(1);
    const b = slab.take(100).fill(2);
    expect(a.every((x) => x === 1) && b.every((x) => x === 2)).toBe(true);
    const big = slab.take(1 << 20);
    expect(big.length).toBe(1 << 20);
    expect(Object.getPrototypeOf(big)).toBe(Uint8Array.prototype);
    expect(Object.getPrototypeOf(a)).toBe(Uint8Array.prototype);
  });

  it("starts a new zeroed slab when one is used up", () => {
    const slab = new ByteSlab();
    const first = slab.take(16 * 1024);
    const ranges = Array.from({ length: 20 }, () => slab.take(16 * 1024));
    expect(ranges.some((r) => r.buffer !== first.buffer)).toBe(true);
    expect(ranges.at(-1)!.every((x) => x === 0)).toBe(true);
  });
});
