import { describe, expect, it } from "vitest";
import { tscKhz, tscKhzAsync } from "../index.js";

describe("tscKhz", () => {
  it("measures one steady rate in a plausible range, on the JS thread and on the threadpool", async () => {
    const first = tscKhz();
    const second = await tscKhzAsync();
    expect(first).toBeGreaterThan(100_000); // 100 MHz
    expect(first).toBeLessThan(10_000_000); // 10 GHz
    // Two measurements of the same counter agree to a few parts per million.
    expect(Math.abs(first - second) / first).toBeLessThan(1e-3);
  });
});
