// `msb mount` as users run it: a child process, real mounts, real syscalls
// from other processes, signals to stop it.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, afterEach, describe, expect, it } from "vitest";
// The loopback registries of ../shared/testbed/oci, started as @msb/oci's own tests start them.
import { TESTBED, startTestbed } from "../../oci/src/test-registry.js";

const run = promisify(execFile);
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const base = mkdtempSync(join(tmpdir(), "msb-cli-"));
// Other users must reach the mountpoints (mkdtemp makes 0700).
chmodSync(base, 0o755);
/** Every `msb mount` started, so a failed test never leaves one serving. */
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

const canMount = process.getuid?.() === 0 && existsSync("/dev/fuse");
const why = !existsSync(CLI) ? `build @msb/sdk first (${CLI} missing)` : !canMount ? "mounting FUSE needs root and /dev/fuse" : undefined;
if (why !== undefined) console.warn(`msb CLI mount tests skipped: ${why}`);
const testbedMissing = why ?? startTestbed();
if (testbedMissing !== undefined && why === undefined) console.warn(`image mount test skipped: ${testbedMissing}`);

let counter = 0;
function scratch(spec: object): { spec: string; mnt: string } {
  const dir = join(base, String(counter++));
  mkdirSync(join(dir, "mnt"), { recursive: true });
  const file = join(dir, "spec.json");
  writeFileSync(file, JSON.stringify(spec));
  return { spec: file, mnt: join(dir, "mnt") };
}

const mounted = (mnt: string): boolean => readFileSync("/proc/self/mounts", "utf8").includes(` ${mnt} `);

/** Starts `msb mount`, resolves once it printed `mounted MOUNTPOINT`. */
async function start(
  spec: string,
  mnt: string,
  extra: readonly string[] = [],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ child: ChildProcess; exited: Promise<number | null> }> {
  const child = spawn(process.execPath, [CLI, "mount", "--spec", spec, mnt, ...extra], { stdio: ["ignore", "pipe", "pipe"], env });
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  let out = "";
  let err = "";
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("\n")) resolve();
    });
    void exited.then((code) => reject(new Error(`msb mount exited with ${code}: ${err}`)));
  });
  expect(out).toBe(`mounted ${mnt}\n`);
  return { child, exited };
}

const sh = async (script: string): Promise<string> => (await run("/bin/sh", ["-c", script])).stdout;

describe.skipIf(why !== undefined)("msb mount", () => {
  it("serves a memfs spec until SIGTERM, then unmounts", async () => {
    const { spec, mnt } = scratch({ type: "memfs", capacity: "64MiB", maxInodes: 10000 });
    const { child, exited } = await start(spec, mnt);
    expect(mounted(mnt)).toBe(true);
    expect(await sh(`cd ${mnt} && mkdir -p a/b && echo hello > a/b/f && cat a/b/f && ls a`)).toBe("hello\nb\n");
    expect(await sh(`df -B1 --output=size ${mnt} | tail -1`)).toMatch(/^\s*67108864\s*$/);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(mounted(mnt)).toBe(false);
  });

  it("serves a passthrough spec until SIGINT, changes landing in the host directory", async () => {
    const host = join(base, "host");
    mkdirSync(host, { recursive: true });
    writeFileSync(join(host, "existing.txt"), "on the host");
    const { spec, mnt } = scratch({ type: "passthrough", rootDir: host, quota: "1GiB" });
    const { child, exited } = await start(spec, mnt, ["--allow-other"]);
    expect(await sh(`cat ${mnt}/existing.txt; echo new > ${mnt}/created.txt`)).toBe("on the host");
    expect(readFileSync(join(host, "created.txt"), "utf8")).toBe("new\n");
    // allow-other: another user reaches the mount (the root dir is 0755).
    expect((await run("setpriv", ["--reuid=1000", "--regid=1000", "--clear-groups", "/bin/cat", `${mnt}/existing.txt`])).stdout).toBe("on the host");
    child.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(mounted(mnt)).toBe(false);
  });

  it("serves an overlay spec: a host directory as the lower, changes kept in a memfs upper", async () => {
    const lower = join(base, "lower");
    mkdirSync(join(lower, "etc"), { recursive: true });
    writeFileSync(join(lower, "etc", "motd"), "lower motd\n");
    const { spec, mnt } = scratch({ type: "overlay", lowers: [{ type: "passthrough", rootDir: lower, readOnly: true }], upper: { type: "memfs" } });
    const { child, exited } = await start(spec, mnt);
    expect(await sh(`cat ${mnt}/etc/motd; echo changed > ${mnt}/etc/motd; cat ${mnt}/etc/motd; rm ${mnt}/etc/motd; ls -A ${mnt}/etc`)).toBe("lower motd\nchanged\n");
    expect(readFileSync(join(lower, "etc", "motd"), "utf8")).toBe("lower motd\n");
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("serves a dual spec: a read-only host directory as b, every change in a memfs a", async () => {
    const project = join(base, "project");
    mkdirSync(join(project, "src"), { recursive: true });
    writeFileSync(join(project, "src", "main.c"), "int main;\n");
    const { spec, mnt } = scratch({ type: "dual", a: { type: "memfs" }, b: { type: "passthrough", rootDir: project, readOnly: true }, policy: "MergeReadsBackendAPrecedence" });
    const { child, exited } = await start(spec, mnt);
    expect(await sh(`cat ${mnt}/src/main.c; echo '// edited' >> ${mnt}/src/main.c; cat ${mnt}/src/main.c; touch ${mnt}/src/new.c; rm ${mnt}/src/main.c; ls -A ${mnt}/src`)).toBe(
      "int main;\nint main;\n// edited\nnew.c\n",
    );
    expect(readFileSync(join(project, "src", "main.c"), "utf8")).toBe("int main;\n");
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it.skipIf(testbedMissing !== undefined)("mounts a pulled image: its layers under a memfs upper", async () => {
    const env = { ...process.env, MSB_HOME: join(base, "home") };
    const ref = `${TESTBED.plain}/busybox:latest`;
    await run(process.execPath, [CLI, "pull", ref, "--insecure"], { env });
    const { spec, mnt } = scratch({ type: "image", ref, upper: { type: "memfs" } });
    const { child, exited } = await start(spec, mnt, [], env);
    expect(await sh(`test -x ${mnt}/bin/busybox && ls ${mnt}/bin | grep -c . && ${mnt}/bin/busybox echo from-the-image`)).toMatch(/^\d+\nfrom-the-image\n$/);
    expect(await sh(`echo patched > ${mnt}/etc/motd; cat ${mnt}/etc/motd; rm ${mnt}/bin/busybox; test -e ${mnt}/bin/busybox || echo gone`)).toBe("patched\ngone\n");
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    // The store's layers are untouched by what the mount changed.
    expect(await sh(`ls ${join(base, "home", "cache", "layers")}/*/*/bin/busybox | wc -l`)).toMatch(/^[1-9]/);
  });

  it("exits 2 naming the JSON path of a bad field, and mounts nothing", async () => {
    const { spec, mnt } = scratch({ type: "memfs", capacity: "lots" });
    const failure = await run(process.execPath, [CLI, "mount", "--spec", spec, mnt]).catch((e: { code: number; stderr: string }) => e);
    expect(failure).toMatchObject({ code: 2 });
    expect((failure as { stderr: string }).stderr).toMatch(/invalid spec: \$\.capacity: expected a byte count/);
    expect(mounted(mnt)).toBe(false);
  });

  it("exits 2 on bad usage and 1 when the mount itself fails", async () => {
    const usage = await run(process.execPath, [CLI, "mount", "/tmp"]).catch((e: { code: number; stderr: string }) => e);
    expect(usage).toMatchObject({ code: 2, stderr: expect.stringMatching(/needs --spec/) as unknown });
    const unknown = await run(process.execPath, [CLI, "frobnicate"]).catch((e: { code: number }) => e);
    expect(unknown).toMatchObject({ code: 2 });
    const { spec } = scratch({ type: "memfs" });
    const failed = await run(process.execPath, [CLI, "mount", "--spec", spec, join(base, "no-such-dir")]).catch((e: { code: number }) => e);
    expect(failed).toMatchObject({ code: 1 });
  });
});
