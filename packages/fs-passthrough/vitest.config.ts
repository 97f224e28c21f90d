import { defineProject } from "vitest/config";

export default defineProject({
  test: {
    name: "fs-passthrough",
    include: ["src/**/*.test.ts"],
    environment: "node",
    benchmark: { include: ["bench/**/*.bench.ts"] },
    // The bench loads PassthroughFs's build as Node loads node:fs, its reference: not through vitest's transform.
    server: { deps: { external: [/\/packages\/fs-passthrough\/dist\//] } },
  },
});
