import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "fuse",
    include: ["src/**/*.test.ts"],
    environment: "node",
    // Real mounts are driven by child processes; give them room on a busy 2-core machine.
    testTimeout: 30_000,
  },
});
