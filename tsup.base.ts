import type { Options } from "tsup";

/** The build every package shares: ESM with declarations and source maps, for Node 20. */
export const packageBuild = {
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20",
  platform: "node",
} satisfies Options;
