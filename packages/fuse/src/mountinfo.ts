import { readFile } from "node:fs/promises";

/** One line of /proc/self/mountinfo, the fields this package needs. */
export interface MountInfo {
  readonly mountId: number;
  /** The device number's minor; FUSE connections are named by it under /sys/fs/fuse/connections. */
  readonly minor: number;
  readonly major: number;
  readonly mountpoint: string;
  readonly fstype: string;
  readonly source: string;
}

/** Undoes the octal escapes (`\040` for a space) the kernel puts in mountinfo paths. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses /proc/self/mountinfo text. */
export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split("\n")) {
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (dash < 6 || fields.length < dash + 3) continue;
    const [major, minor] = fields[2]!.split(":").map(Number);
    mounts.push({
      mountId: Number(fields[0]),
      major: major!,
      minor: minor!,
      mountpoint: unescape(fields[4]!),
      fstype: fields[dash + 1]!,
      source: unescape(fields[dash + 2]!),
    });
  }
  return mounts;
}

/** The mounts stacked on `mountpoint` (an absolute path), bottom first. */
export async function mountsAt(mountpoint: string): Promise<MountInfo[]> {
  return parseMountInfo(await readFile("/proc/self/mountinfo", "utf8")).filter((m) => m.mountpoint === mountpoint);
}
