// Stress on real mounts of each backend kind: stress-ng's filesystem
// stressors with --verify, fio verify jobs, and a seeded random
// read/write/truncate run from several child processes checked against an
// in-memory model; then kernel overlayfs stacked on FUSE-served lowers.
// Every workload runs in child processes (see shell.fixture.ts). stress-ng
// and fio come from scripts/apt-packages.txt: a machine without them fails
// here rather than skipping.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import type { DynFileSystem } from "@msb/fs";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { collectingLogger, type LogLine } from "./harness.fixture.js";
import { mountFuse, type FuseMount } from "./mount.js";
import { fuseUsable, ok, scratch, sh } from "./shell.fixture.js";

const skip = fuseUsable();
if (skip !== undefined) console.warn(`stress tests skipped: ${skip}`);

/** The random I/O run: fixed so a failure replays; MSB_FUSE_SEED picks another. */
const SEED = Number(process.env.MSB_FUSE_SEED ?? 6);
const RANDOM_PROCESSES = 3;
const RANDOM_OPS = 2000;

/** Each backend kind as `msb mount` builds it; `base` is a scratch directory for host-side state. */
const backends: readonly (readonly [string, (base: string) => DynFileSystem])[] = [
  ["memfs", () => new MemFs({ rootMode: 0o777, capacity: "512MiB" })],
  [
    "passthrough",
    (base) => {
      mkdirSync(join(base, "root"));
      return new PassthroughFs({ rootDir: join(base, "root") });
    },
  ],
  [
    "overlay",
    (base) => {
      mkdirSync(join(base, "upper"));
      const lower = new MemFs({ rootMode: 0o777 });
      return new OverlayFs({ lowers: [lower], upper: new PassthroughFs({ rootDir: join(base, "upper") }) });
    },
  ],
];

/**
 * stress-ng's filesystem stressors, one instance each, all verifying what
 * they read back; bounded by operations (not time) so every stressor does
 * the same work on a busy machine. One --link, --symlink or --xattr
 * operation is thousands of system calls; one --link or --symlink operation
 * makes 8192 names in one directory, which takes 6 to 170 s on the backends
 * that go to the host disk on a busy 2-core machine, so those two run on
 * memfs only (`memfsOnly`).
 */
const STRESSORS: readonly (readonly [name: string, options: string, ops: number, memfsOnly?: boolean])[] = [
  ["hdd", "--hdd-bytes 4M --hdd-write-size 4K", 2048],
  ["dir", "--dir-dirs 256", 64],
  ["dentry", "--dentries 512", 64],
  ["link", "", 1, true],
  ["symlink", "", 1, true],
  ["rename", "", 512],
  ["seek", "--seek-size 4M --seek-punch", 256],
  ["fallocate", "--fallocate-bytes 4M", 32],
  ["xattr", "", 1],
];

/** fio verify jobs: random 4 KiB writes, sequential big blocks, O_DIRECT, mmap, and two writers at once. */
const FIO_JOBS = `
[global]
size=4M
do_verify=1
verify_fatal=1
ioengine=psync
[randwrite-crc32c]
rw=randwrite
bs=4k
verify=crc32c
[seqwrite-md5]
rw=write
bs=128k
verify=md5
[direct-randwrite]
rw=randwrite
bs=16k
direct=1
verify=crc32c
[mmap-randwrite]
ioengine=mmap
rw=randwrite
bs=8k
verify=sha256
[two-writers]
numjobs=2
rw=randwrite
bs=4k
verify=crc32c
`;

/** Runs the random I/O fixture in a child process and returns its JSON lines. */
function randomIo(dir: string, seed: number): Promise<{ name: string; size: number; sha256: string }[]> {
  const require = createRequire(import.meta.url);
  const fixture = fileURLToPath(new URL("./random-io.fixture.ts", import.meta.url));
  const args = ["--import", pathToFileURL(require.resolve("tsx")).href, fixture, dir, String(seed), String(RANDOM_OPS), "3"];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) reject(new Error(`random I/O with seed ${seed} exited ${code}: ${stderr}`));
      else resolve(stdout.trim().split("\n").map((line) => JSON.parse(line) as { name: string; size: number; sha256: string }));
    });
  });
}

describe.skipIf(skip !== undefined).each(backends)("stress on a %s mount", (kind, make) => {
  let base: string;
  let mnt: string;
  let m: FuseMount;
  const logs: LogLine[] = [];

  beforeAll(async () => {
    ({ base, mnt } = scratch());
    m = await mountFuse(make(base), mnt, { allowOther: true, logger: collectingLogger(logs) });
  });

  afterAll(async () => {
    await m?.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  it("passes stress-ng's filesystem stressors with --verify", { timeout: 60_000 }, async () => {
    const stressors = STRESSORS.filter(([, , , memfsOnly]) => memfsOnly !== true || kind === "memfs");
    const out = await ok(
      `mkdir ${mnt}/stress-ng && cd ${mnt}/stress-ng && stress-ng --temp-path . --verify --timeout 45s --metrics-brief ${stressors.map(([name, options, ops]) => `--${name} 1 --${name}-ops ${ops} ${options}`).join(" ")} 2>&1`,
      undefined,
      50_000,
    );
    expect(out).toMatch(/successful run completed/);
    expect(out).not.toMatch(/fail|error/i);
    for (const [name, , ops] of stressors) expect(out).toMatch(new RegExp(`metrc: \\[\\d+\\] ${name} +${ops} `)); // all its operations done
    expect(await ok(`ls -A ${mnt}/stress-ng`)).toBe(""); // every stressor cleaned up after itself
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("passes fio verify jobs", { timeout: 60_000 }, async () => {
    const jobs = join(base, "verify.fio");
    writeFileSync(jobs, FIO_JOBS);
    const out = await ok(`mkdir ${mnt}/fio && fio --directory=${mnt}/fio --verify_state_save=0 --output-format=terse --terse-version=3 ${jobs}`, undefined, 50_000);
    const rows = out.trim().split("\n").map((line) => line.split(";"));
    // Terse v3: field 3 is the job name, field 4 its error (0: none).
    expect(rows.map((r) => [r[2], r[4]])).toEqual([
      ["randwrite-crc32c", "0"],
      ["seqwrite-md5", "0"],
      ["direct-randwrite", "0"],
      ["mmap-randwrite", "0"],
      ["two-writers", "0"],
      ["two-writers", "0"],
    ]);
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });

  it("matches an in-memory model under seeded random read/write/truncate from several processes", { timeout: 60_000 }, async () => {
    const dir = join(mnt, "random");
    await ok(`mkdir ${dir}`);
    const seeds = Array.from({ length: RANDOM_PROCESSES }, (_, i) => SEED * 1000 + i);
    const files = (await Promise.all(seeds.map((seed) => randomIo(dir, seed)))).flat();
    expect(files).toHaveLength(RANDOM_PROCESSES * 3);
    // What the writers' models hold is what a fresh process reads.
    const seen = await ok(files.map((f) => `printf '%s ' $(stat -c %s ${f.name}) && sha256sum < ${f.name}`).join(" && "));
    expect(seen.trim().split("\n").map((line) => line.split(" ").slice(0, 2).join(" "))).toEqual(files.map((f) => `${f.size} ${f.sha256}`));
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });
});

describe.skipIf(skip !== undefined)("kernel overlayfs over FUSE-served lowers", () => {
  let base: string;
  const mounts: FuseMount[] = [];
  const logs: LogLine[] = [];

  beforeAll(async () => {
    ({ base } = scratch());
    mkdirSync(join(base, "host"));
    for (const dir of ["lower-mem", "lower-host", "tmp", "merged"]) mkdirSync(join(base, dir));
    const logger = collectingLogger(logs);
    mounts.push(await mountFuse(new MemFs({ rootMode: 0o755 }), join(base, "lower-mem"), { logger }));
    mounts.push(await mountFuse(new PassthroughFs({ rootDir: join(base, "host") }), join(base, "lower-host"), { logger }));
  });

  afterAll(async () => {
    // The overlay and its tmpfs first: they hold the FUSE lowers busy. Unmounted by a
    // child process, since the kernel asks the lowers (served by this thread) on the way.
    await ok(`umount ${base}/merged 2>/dev/null; umount ${base}/tmp 2>/dev/null; true`);
    for (const m of mounts) await m.unmount();
    rmSync(base, { recursive: true, force: true });
  });

  it("reads through both lowers, copies up on write, whites out on rm, and leaves the lowers untouched", async () => {
    const mem = join(base, "lower-mem");
    const host = join(base, "lower-host");
    const merged = join(base, "merged");
    await ok(`set -e
      mkdir ${mem}/etc ${mem}/gone-dir ${host}/etc
      echo top > ${mem}/etc/motd
      echo bottom > ${host}/etc/motd
      echo host-only > ${host}/etc/hosts
      echo keep > ${mem}/etc/keep
      echo doomed > ${mem}/gone-dir/f
      ln -s motd ${mem}/etc/link
      mount -t tmpfs tmpfs ${base}/tmp
      mkdir ${base}/tmp/upper ${base}/tmp/work
      mount -t overlay overlay -o lowerdir=${mem}:${host},upperdir=${base}/tmp/upper,workdir=${base}/tmp/work ${merged}`);
    expect(await ok(`grep " ${merged} " /proc/mounts | cut -d' ' -f3`)).toBe("overlay\n");

    // Reads: the upper lower wins, the lower one fills in, symlinks resolve across.
    expect(await ok(`cd ${merged}/etc && cat motd hosts link && ls`)).toBe("top\nhost-only\ntop\nhosts\nkeep\nlink\nmotd\n");

    // Copy-up: the change lands in the tmpfs upper, the FUSE lowers keep their bytes.
    await ok(`set -e; cd ${merged}/etc; echo appended >> hosts; echo new > fresh; chmod 600 keep`);
    expect(await ok(`cat ${merged}/etc/hosts ${base}/tmp/upper/etc/hosts ${host}/etc/hosts`)).toBe("host-only\nappended\nhost-only\nappended\nhost-only\n");
    expect(await ok(`stat -c '%a %n' ${merged}/etc/keep ${base}/tmp/upper/etc/keep ${mem}/etc/keep`)).toBe(
      `600 ${merged}/etc/keep\n600 ${base}/tmp/upper/etc/keep\n644 ${mem}/etc/keep\n`,
    );

    // Whiteouts: rm of lower entries leaves 0/0 character devices in the upper; the lowers still hold them.
    await ok(`set -e; rm ${merged}/etc/motd; rm -r ${merged}/gone-dir`);
    expect(await ok(`ls ${merged} ${merged}/etc`)).toBe(`${merged}:\netc\n\n${merged}/etc:\nfresh\nhosts\nkeep\nlink\n`);
    expect(await ok(`stat -c '%F %t:%T %n' ${base}/tmp/upper/etc/motd ${base}/tmp/upper/gone-dir`)).toBe(
      `character special file 0:0 ${base}/tmp/upper/etc/motd\ncharacter special file 0:0 ${base}/tmp/upper/gone-dir\n`,
    );
    expect(await ok(`cat ${mem}/etc/motd ${host}/etc/motd ${mem}/gone-dir/f`)).toBe("top\nbottom\ndoomed\n");
    // With motd whited out, the dangling link shows it too.
    expect((await sh(`cat ${merged}/etc/link`)).code).not.toBe(0);
    expect(logs.filter((l) => l.level !== "debug")).toEqual([]);
  });
});
