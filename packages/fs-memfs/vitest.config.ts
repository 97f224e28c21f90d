import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "fs-memfs",
    include: ["src/**/*.test.ts"],
    environment: "node",
    benchmark: { include: ["bench/**/*.bench.ts"] },
    // The bench loads MemFs's build as Node loads memfs, its reference: not through vitest's transform.
    server: { deps: { external: [/\/packages\/fs-memfs\/dist\//] } },
  },
});
