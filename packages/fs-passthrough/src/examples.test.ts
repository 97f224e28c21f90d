import { describe, expect, it } from "vitest";
import { main } from "../examples/serve-dir.js";

describe("examples/serve-dir", () => {
  it("runs and shows the guest's view and the host's", async () => {
    expect(await main()).toEqual([
      'guest: config.toml 1000:1000 640, "answer = 42"',
      "guest: /null is a character device 1:3, mode 666",
      "host: null is a regular file with mode 600",
      "host: its xattr says char device 0:0",
    ]);
  });
});
