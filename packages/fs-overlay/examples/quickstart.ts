// An image's layers as MemFs lowers, a MemFs upper, and the OCI diff layer
// the changes leave in the upper.
// Run it with `pnpm exec tsx packages/fs-overlay/examples/quickstart.ts`.
import { PathFs } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";

export async function main(): Promise<string[]> {
  // Two image layers, bottom first; the second deletes /etc/issue the OCI way.
  const base = new MemFs();
  const baseFiles = new PathFs(base);
  await baseFiles.mkdir("/etc", { recursive: true });
  await baseFiles.writeFile("/etc/hostname", "base\n");
  await baseFiles.writeFile("/etc/issue", "Welcome\n");
  const app = new MemFs();
  const appFiles = new PathFs(app);
  await appFiles.mkdir("/etc", { recursive: true });
  await appFiles.writeFile("/etc/.wh.issue", "");
  await appFiles.mkdir("/app", { recursive: true });
  await appFiles.writeFile("/app/run.sh", "echo hi\n");

  const upper = new MemFs();
  const root = new OverlayFs({ lowers: [base, app], upper });
  await root.init();
  const files = new PathFs(root);
  const lines = [`/etc: ${(await files.readdir("/etc")).map((e) => e.name).sort().join(" ")}`];

  await files.writeFile("/etc/hostname", "sandbox\n"); // copied up, then changed
  await files.rm("/app/run.sh"); // a whiteout in the upper
  await files.writeFile("/app/new.sh", "echo new\n");
  lines.push(`hostname: ${(await files.readFile("/etc/hostname", "utf8")).trim()}`);

  // The upper, minus the staging directory, is the diff layer.
  const diff: string[] = [];
  for await (const e of new PathFs(upper).walk("/")) if (e.path !== "" && !e.path.startsWith(".msb-staging")) diff.push(e.path);
  lines.push(`diff: ${diff.sort().join(" ")}`);
  return lines;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log((await main()).join("\n"));
}
