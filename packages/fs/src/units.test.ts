import { describe, expect, it } from "vitest";
import { parseBytes } from "./units.js";

describe("parseBytes", () => {
  it("reads plain numbers and binary units in any case", () => {
    expect(parseBytes("4096")).toBe(4096);
    expect(parseBytes("64MiB")).toBe(64 * 2 ** 20);
    expect(parseBytes("512k")).toBe(512 * 1024);
    expect(parseBytes("1.5 GB")).toBe(1.5 * 2 ** 30);
    expect(parseBytes("2t")).toBe(2 * 2 ** 40);
    expect(parseBytes(" 3 KiB ")).toBe(3072);
  });

  it("refuses what is no byte count", () => {
    expect(parseBytes("12 apples")).toBeUndefined();
    expect(parseBytes("-1k")).toBeUndefined();
    expect(parseBytes("")).toBeUndefined();
    expect(parseBytes("k")).toBeUndefined();
    expect(parseBytes("99999999p")).toBeUndefined();
  });
});
