import { describe, expect, it } from "vitest";
import { main } from "../examples/quickstart.js";

describe("examples/quickstart", () => {
  it("runs: reads the host directory in place and keeps every change in memory", async () => {
    expect(await main()).toEqual([
      "sandbox sees: README.md notes.txt",
      'README.md: "# demo\\nedited in the sandbox\\n"',
      'host README.md: "# demo\\n"',
      "scratch holds: .msb-dual-staging .msb-wh.README.md .msb-wh.build.log README.md notes.txt",
    ]);
  });
});
