// `msb run` as users run it: the built CLI in a child process, booting real
// microVMs (TCG where there is no hardware KVM), real images from the
// loopback registries of ../shared/testbed/oci.
import { execFile, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { TESTBED, startTestbed } from "../../oci/src/test-registry.js";
import { parseRunArgs } from "./cli-run.js";
import { BUILTIN_IMAGE, imageCommand, mergeEnv } from "./sandbox.js";

const execFileAsync = promisify(execFile);
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const base = mkdtempSync(join(tmpdir(), "msb-run-"));
const env = { ...process.env, MSB_HOME: join(base, "home") };
afterAll(() => rmSync(base, { recursive: true, force: true }));

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `msb ARGS` with `input` on stdin; resolves with its status and output. */
function msb(args: readonly string[], input?: string): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("exit", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(input);
  });
}

describe("parseRunArgs", () => {
  it("takes options first, then IMAGE, then the command", () => {
    expect(parseRunArgs(["-e", "A=1", "-w", "/tmp", "busybox", "ls", "-l"])).toMatchObject({ image: "busybox", command: ["ls", "-l"], env: ["A=1"], workdir: "/tmp" });
    expect(parseRunArgs(["--", "echo", "hi"])).toMatchObject({ image: undefined, command: ["echo", "hi"] });
    expect(parseRunArgs(["busybox", "--", "echo", "-n"])).toMatchObject({ image: "busybox", command: ["echo", "-n"] });
    expect(parseRunArgs(["--rootfs", "/srv/root", "sh"])).toMatchObject({ image: undefined, rootfs: "/srv/root", command: ["sh"] });
    expect(parseRunArgs(["-ti", "--memory", "512", "--cpus", "2", "img"])).toMatchObject({ tty: true, interactive: true, memoryMiB: 512, cpus: 2, image: "img", command: [] });
  });

  it.each([
    [["--memory", "lots", "--", "true"], /--memory/],
    [["--cpus", "0", "--", "true"], /--cpus/],
    [["-e", "NOEQUALS", "--", "true"], /KEY=VALUE/],
    [["--frobnicate", "--", "true"], /frobnicate/],
    [["--pull", "sometimes", "--", "true"], /--pull/],
  ])("refuses %j", (args, message) => {
    expect(() => parseRunArgs(args)).toThrow(message);
  });

  it("composes ENTRYPOINT, CMD and the environment as Docker does", () => {
    expect(imageCommand({ entrypoint: ["/entry"], cmd: ["a"] }, [])).toEqual(["/entry", "a"]);
    expect(imageCommand({ entrypoint: ["/entry"], cmd: ["a"] }, ["b"])).toEqual(["/entry", "b"]);
    expect(imageCommand({ entrypoint: undefined, cmd: ["sh"] }, [])).toEqual(["sh"]);
    expect(mergeEnv(["PATH=/bin", "A=1"], ["A=2", "B=3"])).toEqual(["PATH=/bin", "A=2", "B=3"]);
  });
});

describe.skipIf(!existsSync(CLI))("msb run", () => {
  it("runs the README's command on the built-in image", async () => {
    const result = await msb(["run", "--", "echo", "hi"]);
    expect(result).toMatchObject({ code: 0, stdout: "hi\n" });
    // The built-in image was imported into this MSB_HOME like a pulled one.
    const images = await execFileAsync(process.execPath, [CLI, "images", "--json"], { env });
    expect(images.stdout).toContain(BUILTIN_IMAGE);
  }, 120_000);

  it("exits with the command's status, keeps stdout and stderr apart", async () => {
    const result = await msb(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    expect(result).toEqual({ code: 7, stdout: "out\n", stderr: "err\n" });
  }, 120_000);

  it("applies -e, -w and -u, and pipes stdin with -i", async () => {
    const result = await msb(["run", "-i", "-e", "GREETING=hello there", "-w", "/tmp", "-u", "nobody", "--", "sh", "-c", 'echo "$GREETING"; pwd; id -u; cat'], "from stdin\n");
    expect(result).toMatchObject({ code: 0, stdout: "hello there\n/tmp\n65534\nfrom stdin\n" });
  }, 120_000);

  it("exits 127 for a command that does not exist, 125 for a bad image", async () => {
    const missing = await msb(["run", "--", "no-such-command"]);
    expect(missing.code).toBe(127);
    expect(missing.stderr).toMatch(/not found|ENOENT/i);
    const badImage = await msb(["run", "--pull", "never", "localhost:1/never/pulled", "--", "true"]);
    expect(badImage.code).toBe(125);
    expect(badImage.stderr).toMatch(/ERR_MSB_IMAGE_NOT_FOUND.*not in the local store/);
  }, 120_000);

  it("mounts -v named and bind volumes and --tmpfs", async () => {
    const hostDir = mkdtempSync(join(base, "bind-"));
    writeFileSync(join(hostDir, "in.txt"), "from host\n");
    const result = await msb(["run", "-v", "runvol:/data", "-v", `${hostDir}:/in:ro`, "--tmpfs", "/t:8MiB", "--", "sh", "-c", "echo kept > /data/k; cat /in/in.txt; awk '$2 == \"/t\" { print $3 }' /proc/mounts; touch /in/x 2>/dev/null || echo ro"]);
    expect(result).toMatchObject({ code: 0, stdout: "from host\ntmpfs\nro\n" });
    expect(readFileSync(join(env.MSB_HOME, "volumes", "runvol", "k"), "utf8")).toBe("kept\n");
    expect((await msb(["run", "-v", "nonsense", "--", "true"])).code).toBe(2);
    expect(await msb(["volume", "rm", "runvol"])).toMatchObject({ code: 0 });
  }, 120_000);

  it("says what this machine gives msb with doctor", async () => {
    const result = await msb(["doctor", "--json"]);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as { ok: boolean; accelerator: { accel: string; reason: string }; qemu: string; guestAssets: { ok: boolean } };
    expect(report).toMatchObject({ ok: true, guestAssets: { ok: true } });
    expect(["kvm", "tcg"]).toContain(report.accelerator.accel);
    expect(report.qemu).toMatch(/QEMU emulator version/);
    expect((await msb(["doctor"])).stdout).toMatch(/^accelerator: {2}(kvm|tcg) \(/);
  });

  it("manages named volumes and lists sandboxes", async () => {
    expect(await msb(["volume", "create", "cli-vol", "--quota", "1MiB"])).toMatchObject({ code: 0, stdout: "cli-vol\n" });
    const listed = await msb(["volume", "ls", "--json"]);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ name: "cli-vol", quota: 1048576 })]);
    expect((await msb(["volume", "ls"])).stdout).toMatch(/^NAME\s+QUOTA\s+CREATED\s+PATH\ncli-vol\s+1\.0 MiB/);
    expect(await msb(["volume", "rm", "cli-vol"])).toMatchObject({ code: 0 });
    const again = await msb(["volume", "rm", "cli-vol"]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/ERR_MSB_VOLUME/);
    expect(await msb(["volume", "frobnicate"])).toMatchObject({ code: 2 });
    expect(JSON.parse((await msb(["ls", "--json"])).stdout)).toEqual([]);
    expect((await msb(["ls"])).stdout).toMatch(/^NAME\s+STATUS\s+IMAGE\s+PID\s+CREATED\n$/);
  }, 60_000);

  it("runs a detached sandbox: run -d, exec by name from other processes, ls, stop, start, rm, create", async () => {
    expect(await msb(["run", "-d", "--name", "bg-cli"])).toMatchObject({ code: 0, stdout: "bg-cli\n" });
    expect(await msb(["exec", "bg-cli", "--", "sh", "-c", "echo hi > /tmp/f; cat /tmp/f; exit 3"])).toMatchObject({ code: 3, stdout: "hi\n" });
    expect(await msb(["exec", "-i", "-e", "X=1", "bg-cli", "--", "sh", "-c", "echo $X; cat /tmp/f; cat"], "piped\n")).toMatchObject({ code: 0, stdout: "1\nhi\npiped\n" });
    expect(JSON.parse((await msb(["ls", "--json"])).stdout)).toEqual([expect.objectContaining({ name: "bg-cli", status: "running" })]);
    expect(JSON.parse((await msb(["ps", "--json"])).stdout)).toEqual([expect.objectContaining({ name: "bg-cli", detached: true })]);
    const inspected = JSON.parse((await msb(["inspect", "bg-cli"])).stdout) as { status: string; metrics: { accel: string } };
    expect(inspected).toMatchObject({ status: "running", metrics: { accel: expect.stringMatching(/^(kvm|tcg)$/) as unknown } });
    expect((await msb(["logs", "bg-cli"])).code).toBe(0);
    expect(await msb(["stop", "bg-cli"])).toMatchObject({ code: 0, stdout: "bg-cli\n" });
    expect(JSON.parse((await msb(["ls", "--json"])).stdout)).toEqual([expect.objectContaining({ name: "bg-cli", status: "stopped" })]);
    expect(await msb(["start", "bg-cli"])).toMatchObject({ code: 0, stdout: "bg-cli\n" });
    // The root was kept while it was stopped.
    expect(await msb(["exec", "bg-cli", "--", "cat", "/tmp/f"])).toMatchObject({ code: 0, stdout: "hi\n" });
    expect(await msb(["rm", "bg-cli"])).toMatchObject({ code: 0, stdout: "bg-cli\n" });
    expect(JSON.parse((await msb(["ls", "--json"])).stdout)).toEqual([]);
    expect(await msb(["create", "--name", "made"])).toMatchObject({ code: 0, stdout: "made\n" });
    expect(await msb(["rm", "made"])).toMatchObject({ code: 0 });
    const gone = await msb(["exec", "bg-cli", "--", "true"]);
    expect(gone.code).toBe(125);
    expect(gone.stderr).toMatch(/ERR_MSB_SANDBOX_NOT_FOUND/);
    expect((await msb(["run", "-d", "--", "echo", "no"])).code).toBe(2);
  }, 120_000);

  it("leaves no sandbox directory behind", () => {
    const sandboxes = join(env.MSB_HOME, "sandboxes");
    expect(existsSync(sandboxes) ? readdirSync(sandboxes) : []).toEqual([]);
  });

  const testbedMissing = startTestbed();
  it.skipIf(testbedMissing !== undefined)("runs a pulled image with its config applied", async () => {
    const ref = `${TESTBED.plain}/busybox:latest`;
    await execFileAsync(process.execPath, [CLI, "pull", ref, "--insecure"], { env });
    const result = await msb(["run", ref, "--", "sh", "-c", "busybox | head -1; echo $PATH"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^BusyBox v1\.\d+/);
    expect(result.stdout).toContain("/bin");
  }, 120_000);
});
