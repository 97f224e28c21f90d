// The kernel side of the differential tests: mounting `mount -t overlay` on
// host directories, and building lower directories for it.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import * as host from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why the kernel's overlayfs cannot be mounted here, or `undefined` when it can. */
export function canMountOverlay(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root to mount the kernel's overlayfs";
  const probe = mkdtempSync(join(tmpdir(), "msb-ovl-probe-"));
  try {
    for (const d of ["l", "u", "w", "m"]) mkdirSync(join(probe, d));
    mountOverlay([join(probe, "l")], join(probe, "u"), join(probe, "w"), join(probe, "m"));
    unmount(join(probe, "m"));
    return undefined;
  } catch {
    return "the kernel's overlayfs cannot be mounted here";
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}

/**
 * Mounts the kernel's overlayfs at `target`; `lowers` bottom first, as
 * OverlayFs takes them. `redirect_dir=on`, since OverlayFs renames lower
 * directories instead of answering EXDEV.
 */
export function mountOverlay(lowers: readonly string[], upper: string, work: string, target: string, extra: readonly string[] = []): void {
  const options = [`lowerdir=${[...lowers].reverse().join(":")}`, `upperdir=${upper}`, `workdir=${work}`, "redirect_dir=on", ...extra];
  execFileSync("mount", ["-t", "overlay", "overlay", "-o", options.join(","), target], { stdio: "ignore" });
}

/** Unmounts `target`; nothing happens when nothing is mounted there. */
export function unmount(target: string): void {
  try {
    execFileSync("umount", [target], { stdio: "ignore" });
  } catch {
    // not mounted
  }
}

/** Builds a lower directory on the host: path → content, every file mode 0644. */
export function lowerDir(base: string, name: string, files: Record<string, string>): string {
  const dir = join(base, name);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), content, { mode: 0o644 });
  }
  return dir;
}

/** Every path of a host tree with what it holds: file content, symlink target, or `dir`. */
export async function hostSnapshot(root: string, rel = ""): Promise<Record<string, string>> {
  const out: Record<string, string> = { [rel]: "dir" };
  for (const entry of await host.readdir(join(root, rel), { withFileTypes: true })) {
    const path = rel === "" ? entry.name : `${rel}/${entry.name}`;
    if (entry.isDirectory()) Object.assign(out, await hostSnapshot(root, path));
    else if (entry.isSymbolicLink()) out[path] = `-> ${await host.readlink(join(root, path))}`;
    else out[path] = await host.readFile(join(root, path), "utf8");
  }
  return out;
}
