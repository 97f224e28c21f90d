import { describe, expect, it } from "vitest";
import { main } from "../examples/quickstart.js";

describe("examples/quickstart", () => {
  it("runs: merges two layers and leaves the OCI diff in the upper", async () => {
    expect(await main()).toEqual([
      "/etc: hostname",
      "hostname: sandbox",
      "diff: app app/.wh.run.sh app/new.sh etc etc/hostname",
    ]);
  });
});
