import { defineConfig } from "tsup";
import { packageBuild } from "../../tsup.base.js";

export default defineConfig({
  ...packageBuild,
  entry: { index: "src/index.ts", "testing/index": "src/testing/index.ts" },
  // The conformance kit runs inside the backend's own vitest.
  external: ["vitest"],
});
