import { describe, expect, it } from "vitest";
import { main } from "../examples/pull-image.js";
import { startTestbed, TESTBED } from "./test-registry.js";

const skip = startTestbed();
if (skip !== undefined) console.warn(`skipping the example test: ${skip}`);

describe.skipIf(skip !== undefined)("examples/pull-image", () => {
  it("pulls, reads the config, lists, removes and prunes", async () => {
    const lines = await main(`${TESTBED.plain}/busybox:latest`, true);
    expect(lines[0]).toMatch(/^pulled 127\.0\.0\.1:5000\/busybox:latest \(linux\/amd64\) sha256:/);
    expect(lines[2]).toMatch(/^built \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect([lines[1], ...lines.slice(3)]).toEqual([
      'cmd ["/bin/sh"] env PATH=/usr/sbin:/usr/bin:/sbin:/bin',
      "1 layer dir(s), bottom first",
      "store has 1 image(s)",
      "removed 1 layer(s) no other image uses",
      "prune found 0 more blob(s) to delete",
    ]);
  });
});
