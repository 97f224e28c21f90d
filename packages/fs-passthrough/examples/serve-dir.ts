// Serve a host directory to a "guest" and look at both sides: the guest sees
// the owners, modes and device nodes it asked for; the host keeps private
// regular files with the guest's view in an xattr. Run it with
// `pnpm exec tsx packages/fs-passthrough/examples/serve-dir.ts` or through its test.
import { OVERRIDE_STAT_XATTR, PathFs, S, decodeOverrideStat, makedev } from "@msb/fs";
import { getxattr } from "@msb/native";
import { lstatSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { PassthroughFs } from "@msb/fs-passthrough";

export async function main(): Promise<string[]> {
  const rootDir = mkdtempSync(join(tmpdir(), "msb-example-"));
  const fs = new PassthroughFs({ rootDir, quota: 64 << 20 });
  try {
    // The guest side: a path-level client acting as root in the guest.
    const guest = new PathFs(fs);
    await guest.mkdir("/etc/app", { recursive: true });
    await guest.writeFile("/etc/app/config.toml", "answer = 42\n", { mode: 0o640 });
    await guest.chown("/etc/app/config.toml", 1000, 1000);
    fs.mknod({ uid: 0, gid: 0, pid: 0 }, 1, new TextEncoder().encode("null"), S.IFCHR | 0o666, makedev(1, 3), 0);
    const config = await guest.stat("/etc/app/config.toml");
    const device = await guest.lstat("/null");

    // The host side: private regular files, the guest view in user.msb.override_stat.
    const host = lstatSync(join(rootDir, "null"));
    const stored = decodeOverrideStat(getxattr(join(rootDir, "null"), OVERRIDE_STAT_XATTR));
    return [
      `guest: config.toml ${config.uid}:${config.gid} ${(config.mode & 0o7777).toString(8)}, "${(await guest.readFile("/etc/app/config.toml", "utf8")).trim()}"`,
      `guest: /null is a character device ${device.rdev === makedev(1, 3) ? "1:3" : "?"}, mode ${(device.mode & 0o7777).toString(8)}`,
      `host: null is a ${host.isFile() ? "regular file" : "special file"} with mode ${(host.mode & 0o7777).toString(8)}`,
      `host: its xattr says ${(stored.mode & S.IFMT) === S.IFCHR ? "char device" : "?"} ${stored.uid}:${stored.gid}`,
    ];
  } finally {
    fs.destroy();
    rmSync(rootDir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  for (const line of await main()) console.log(line);
}
