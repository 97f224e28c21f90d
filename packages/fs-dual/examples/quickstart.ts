// A read-only host directory (backend B) under an in-memory scratch space
// (backend A): the default policy reads B in place and puts every change in A.
// Run it with `pnpm exec tsx packages/fs-dual/examples/quickstart.ts`.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PathFs } from "@msb/fs";
import { DualFs } from "@msb/fs-dual";
import { MemFs } from "@msb/fs-memfs";
import { PassthroughFs } from "@msb/fs-passthrough";

export async function main(): Promise<string[]> {
  const project = await mkdtemp(join(tmpdir(), "msb-dual-example-"));
  try {
    await writeFile(join(project, "README.md"), "# demo\n");
    await writeFile(join(project, "build.log"), "old log\n");

    const scratch = new MemFs();
    const fs = new DualFs({ backendA: scratch, backendB: new PassthroughFs({ rootDir: project, readOnly: true }) });
    await fs.init();
    const files = new PathFs(fs);

    await files.appendFile("/README.md", "edited in the sandbox\n"); // copied into A, then changed
    await files.rm("/build.log"); // hidden by a whiteout in A; the host file stays
    await files.writeFile("/notes.txt", "new\n"); // created in A

    const lines = [
      `sandbox sees: ${(await files.readdir("/")).map((e) => e.name).sort().join(" ")}`,
      `README.md: ${JSON.stringify(await files.readFile("/README.md", "utf8"))}`,
      `host README.md: ${JSON.stringify(await readFile(join(project, "README.md"), "utf8"))}`,
      `scratch holds: ${(await new PathFs(scratch).readdir("/")).map((e) => e.name).sort().join(" ")}`,
    ];
    await fs.destroy();
    return lines;
  } finally {
    await rm(project, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await main()) console.log(line);
}
