import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // One vitest project per package; each package's own config names its tests.
    projects: ["packages/*/vitest.config.ts", "native/*/vitest.config.mts"],
  },
});
