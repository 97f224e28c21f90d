// Pull an image into a store, read its config, list, remove and prune.
//
//   pnpm exec tsx examples/pull-image.ts 127.0.0.1:5000/busybox:latest --insecure
//
// (the registry above is the local testbed: bash ../shared/testbed/oci/up.sh)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ImageStore, pull } from "@msb/oci";

export async function main(reference: string, insecure: boolean): Promise<string[]> {
  const home = await mkdtemp(join(tmpdir(), "msb-example-"));
  const lines: string[] = [];
  try {
    const image = await pull(reference, { home, insecure, platform: "linux/amd64" });
    lines.push(`pulled ${image.reference} (${image.platform}) ${image.digest.slice(0, 19)}`);
    lines.push(`cmd ${JSON.stringify(image.imageConfig.cmd)} env ${image.imageConfig.env.join(" ")}`);
    lines.push(`built ${image.created ?? "at a time the config does not say"}`);
    lines.push(`${image.layerDirs.length} layer dir(s), bottom first`);
    const store = new ImageStore({ home });
    lines.push(`store has ${(await store.listImages()).length} image(s)`);
    const removed = await store.removeImage(reference);
    lines.push(`removed ${removed.layers.length} layer(s) no other image uses`);
    lines.push(`prune found ${(await store.prune()).blobs.length} more blob(s) to delete`);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  return lines;
}

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1])) {
  for (const line of await main(process.argv[2] ?? "busybox", process.argv.includes("--insecure"))) console.log(line);
}
