// Pull + unpack of debian:bookworm from the testbed's plain registry, next to
// `skopeo copy` + `umoci unpack` of the same image, in one run (`pnpm bench`),
// for the gzip image and a true zstd variant of it.
// Goals on the reference machine: ≤ 0.9 s (gzip), ≤ 0.5 s (zstd).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { pull } from "../src/pull.js";
import { startTestbed, TESTBED } from "../src/test-registry.js";

const RUNS = Number(process.env.MSB_BENCH_RUNS ?? 3);
const TESTBED_DIR = process.env.TESTBED ?? join(import.meta.dirname, "..", "..", "..", "..", "shared", "testbed", "oci");
const REPO = `${TESTBED.plain}/debian`;

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? NaN;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

async function layerMediaTypes(tag: string): Promise<string[] | undefined> {
  const res = await fetch(`http://${TESTBED.plain}/v2/debian/manifests/${tag}`, {
    headers: { accept: "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json" },
  });
  if (!res.ok) return undefined;
  return ((await res.json()) as { layers: { mediaType: string }[] }).layers.map((l) => l.mediaType);
}

/** Makes sure the registry serves debian:bookworm (gzip) and debian:bookworm-zstd (really zstd). */
async function prepareImages(): Promise<void> {
  const skip = startTestbed();
  if (skip !== undefined) throw new Error(skip);
  if ((await layerMediaTypes("bookworm")) === undefined) {
    const t0 = performance.now();
    console.log("building debian:bookworm in the testbed (DEBIAN=1 build-images.sh && push.sh)...");
    execFileSync("flock", ["--close", join(tmpdir(), "msb-oci-testbed-up.lock"), "bash", "-c", "DEBIAN=1 bash build-images.sh && bash push.sh"], { cwd: TESTBED_DIR, stdio: "pipe" });
    console.log(`  built and pushed in ${seconds(performance.now() - t0)}`);
  }
  const zstdTypes = await layerMediaTypes("bookworm-zstd");
  if (zstdTypes === undefined || !zstdTypes.every((type) => type.endsWith("+zstd"))) {
    // skopeo reuses a blob the destination registry already has, whatever the asked compression:
    // recompress into a local layout first, then push that with its digests.
    const layout = mkdtempSync(join(tmpdir(), "msb-oci-bench-zstd-"));
    try {
      execFileSync("skopeo", ["copy", "-q", "--src-tls-verify=false", "--dest-compress-format", "zstd", "--dest-compress", `docker://${REPO}:bookworm`, `oci:${layout}:bookworm`]);
      execFileSync("skopeo", ["copy", "-q", "--dest-tls-verify=false", "--preserve-digests", `oci:${layout}:bookworm`, `docker://${REPO}:bookworm-zstd`]);
    } finally {
      rmSync(layout, { recursive: true, force: true });
    }
  }
}

/** The hex digest of the one manifest an OCI layout's index.json lists. */
function indexManifest(layout: string): string {
  const index = JSON.parse(readFileSync(join(layout, "index.json"), "utf8")) as { manifests: { digest: string }[] };
  return index.manifests[0]!.digest.slice("sha256:".length);
}

/**
 * Scratch directories, removed only when the bench ends: on an ext4 without a
 * journal (as this machine's), the kernel skips every inode freed in the last
 * 60–360 s when it allocates one (`recently_deleted` in fs/ext4/ialloc.c), so
 * removing one run's ~8,700 files would make the next run's creates scan past
 * them all and time the previous removal instead of the pull.
 */
const scratch: string[] = [];

/** Times `run` in a fresh scratch directory under `parent`, `RUNS` times. */
async function time(parent: string, run: (dir: string) => Promise<void> | void): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const dir = mkdtempSync(join(parent, "msb-oci-bench-"));
    scratch.push(dir);
    const t0 = performance.now();
    await run(dir);
    times.push(performance.now() - t0);
  }
  return times;
}

await prepareImages();
// tmpfs, where creating inodes is cheap, so it shows the rest of the work; then the store's own medium (disk).
// tmpfs first: the disk runs leave ~1.5 GB to write back, which would slow whatever runs next.
const media = [...(existsSync("/dev/shm") ? [{ name: "tmpfs", dir: "/dev/shm" }] : []), { name: "disk", dir: tmpdir() }];
// Creating inodes is most of the work and the first thing a busy machine slows: say how busy it is.
const load = (): string => `load average ${loadavg()[0]!.toFixed(1)} on ${String(availableParallelism())} cores`;
console.log(`@msb/oci bench: pull + unpack of ${REPO} from the testbed, median of ${String(RUNS)} runs each; ${load()}\n`);
try {
  for (const medium of media) {
    for (const { name, tag, goal } of [
      { name: "gzip", tag: "bookworm", goal: 900 },
      { name: "zstd", tag: "bookworm-zstd", goal: 500 },
    ]) {
      const ours = median(await time(medium.dir, (home) => pull(`${REPO}:${tag}`, { home, insecure: [TESTBED.plain] }).then(() => undefined)));
      const reference = median(
        await time(medium.dir, (dir) => {
          const layout = join(dir, "layout");
          execFileSync("skopeo", ["copy", "-q", "--src-tls-verify=false", `docker://${REPO}:${tag}`, `oci:${layout}:image`]);
          if (name === "gzip") {
            execFileSync("umoci", ["unpack", "--image", `${layout}:image`, join(dir, "bundle")]);
            return;
          }
          // umoci 0.4 cannot read zstd layers: GNU tar unpacks the (single) layer blob instead, owners and xattrs kept.
          const rootfs = join(dir, "rootfs");
          mkdirSync(rootfs);
          const manifest = JSON.parse(readFileSync(join(layout, "blobs", "sha256", indexManifest(layout)), "utf8")) as { layers: { digest: string }[] };
          for (const layer of manifest.layers) {
            execFileSync("tar", ["--zstd", "-xpf", join(layout, "blobs", "sha256", layer.digest.slice("sha256:".length)), "--xattrs", "--xattrs-include=*", "-C", rootfs]);
          }
        }),
      );
      console.log(
        `${medium.name} ${name}: msb pull ${seconds(ours)}, skopeo copy + ${name === "gzip" ? "umoci unpack" : "tar --zstd -x"} ${seconds(reference)}, ratio ${(reference / ours).toFixed(2)}× (goal ≤ ${seconds(goal)}: ${ours <= goal ? "met" : "NOT met"}; ${load()})`,
      );
    }
  }
} finally {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
}
