import { describe, expect, it } from "vitest";
import { main } from "../examples/quickstart.js";

describe("examples/quickstart", () => {
  it("runs: reads through a symlink and into a kept buffer, keeps a sparse file small, and fills up with ENOSPC", async () => {
    const lines = await main();
    expect(lines[0]).toBe('config: {"debug":true}');
    expect(lines[1]).toBe('readInto: 14 bytes, {"debug":true}');
    expect(lines[2]).toMatch(/^sparse: 512000 bytes, \d+ bytes held$/);
    expect(Number(/(\d+) bytes held/.exec(lines[2]!)![1])).toBeLessThan(10_000);
    expect(lines.slice(3)).toEqual(["full: ENOSPC", "statfs: 256 blocks of 4096 bytes, 0 free"]);
  });
});
