// A sandbox on the built-in busybox image: a script, a patch, a memfs volume,
// an exec with a timeout, and the fs API.
// Run it with `pnpm exec tsx packages/sdk/examples/sandbox.ts` (after `bash scripts/setup.sh`).
import { Sandbox, SandboxError } from "@msb/sdk";

export async function main(): Promise<string[]> {
  await using sandbox = await Sandbox.builder("example")
    .env("GREETING", "hello")
    .script("greet", '#!/bin/sh\necho "$GREETING, $1"\n')
    .patch((p) => p.text("/etc/motd", "welcome to the sandbox\n"))
    .volume("/cache", (v) => v.memfs("64MiB"))
    .create();

  const lines: string[] = [];
  lines.push((await sandbox.shell("greet world")).stdout.trim());
  lines.push((await sandbox.exec("cat", ["/etc/motd"])).stdout.trim());

  await sandbox.fs.write("/cache/data.txt", "kept in a MemFs on the host");
  lines.push(await sandbox.fs.readToString("/cache/data.txt"));

  try {
    await sandbox.exec("sleep", ["10"], { timeoutMs: 200 });
  } catch (error) {
    if (SandboxError.isInstance(error)) lines.push(error.code); // ERR_MSB_EXEC_TIMEOUT
  }
  return lines;
}

if (import.meta.url === `file://${process.argv[1] ?? ""}`) console.log((await main()).join("\n"));
