// A small root filesystem for VM tests, built from the busybox-static binary
// that setup installs: busybox with its applets, users root/nobody/alice.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, chown, copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** Where Debian's busybox-static installs its binary. */
export const BUSYBOX = "/bin/busybox";

/** Builds the tree under `dir` (which must exist and be empty). */
export async function buildBusyboxRoot(dir: string): Promise<void> {
  if (!existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} is missing: bash scripts/setup.sh installs busybox-static`);
  for (const sub of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "home/alice", "tmp", "proc", "sys", "dev", "work"]) await mkdir(join(dir, sub), { recursive: true });
  await chmod(join(dir, "tmp"), 0o1777);
  if (process.getuid?.() === 0) await chown(join(dir, "home/alice"), 1000, 1000);
  await copyFile(BUSYBOX, join(dir, "bin/busybox"));
  await chmod(join(dir, "bin/busybox"), 0o755);
  const applets = execFileSync(BUSYBOX, ["--list-full"], { encoding: "utf8" }).split("\n").filter((line) => line !== "" && line !== "bin/busybox");
  for (const applet of applets) {
    const target = join(dir, applet);
    if (!existsSync(target)) await symlink("/bin/busybox", target);
  }
  await writeFile(join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n");
  await writeFile(join(dir, "etc/group"), "root:x:0:\nalice:x:1000:\nstaff:x:50:alice\nnogroup:x:65534:\n");
  await writeFile(join(dir, "etc/hostname"), "fixture\n");
}
