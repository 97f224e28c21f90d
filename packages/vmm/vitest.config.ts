import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "vmm",
    include: ["src/**/*.test.ts"],
    environment: "node",
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
