import { describe, expect, it } from "vitest";
import { main } from "../examples/pull-image.js";
import { startTestbed, TESTBED } from "./test-registry.js";

const skip = startTestbed();
if (skip !== undefined) console.warn(`skipping the example test: ${skip}`);

describe.skipIf(skip !== undefined)("examples/pull-image", () => {
  it("pulls, reads the config, lists and removes", async () => {
    const lines = await main(`${TESTBED.plain}/busybox:latest`, true);
    expect(lines[0]).toMatch(/^pulled 127\.0\.0\.1:5000\/busybox:latest \(linux\/amd64\) sha256:/);
    expect(lines.slice(1)).toEqual([
      'cmd ["/bin/sh"] env PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      "1 layer dir(s), bottom first",
      "store has 1 image(s)",
      "removed 1 layer(s) no other image uses",
    ]);
  });
});
