import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "fs-overlay",
    include: ["src/**/*.test.ts"],
    environment: "node",
    benchmark: { include: ["bench/**/*.bench.ts"] },
  },
});
