// Helpers of the real-mount tests: whether this machine can mount FUSE,
// scratch directories, and shell scripts run in child processes (a mount
// served by the test's own thread must never be touched synchronously from
// that thread: it would wait for itself).
import { execFile } from "node:child_process";
import { accessSync, chmodSync, constants as fsc, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** Why FUSE mounts cannot be tested here, or `undefined` when they can. */
export function fuseUsable(): string | undefined {
  if (process.getuid?.() !== 0) return "mounting needs root";
  try {
    accessSync("/dev/fuse", fsc.R_OK | fsc.W_OK);
  } catch {
    return "/dev/fuse is missing";
  }
  return undefined;
}

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** setpriv arguments that run a child as uid/gid 1000. */
export const USER = ["--reuid=1000", "--regid=1000", "--groups=1000"];

/** Runs a /bin/sh script in a child process, as root or (with `as`) through setpriv. */
export function sh(script: string, as?: readonly string[], timeoutMs = 20_000): Promise<Run> {
  const [file, args] = as === undefined ? ["/bin/sh", ["-c", script]] : ["/usr/bin/setpriv", [...as, "/bin/sh", "-c", script]];
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 1 << 24 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : -1, stdout, stderr });
    });
  });
}

/** {@link sh}, throwing with the script's output unless it exits 0. */
export async function ok(script: string, as?: readonly string[], timeoutMs?: number): Promise<string> {
  const run = await sh(script, as, timeoutMs);
  if (run.code !== 0) throw new Error(`script failed (${run.code}): ${script}\n${run.stderr}${run.stdout}`);
  return run.stdout;
}

/** How many mounts sit on `path`. */
export const mounted = (path: string): number =>
  readFileSync("/proc/self/mounts", "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[1] === path).length;

/** A fresh directory under /tmp (reachable by uid 1000) with an empty `mnt` in it. */
export function scratch(): { base: string; mnt: string } {
  const base = mkdtempSync("/tmp/msb-fuse-test-");
  chmodSync(base, 0o755); // uid 1000 must reach the mountpoint
  const mnt = join(base, "mnt");
  mkdirSync(mnt);
  return { base, mnt };
}
