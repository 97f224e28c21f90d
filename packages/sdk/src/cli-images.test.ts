// `msb pull`, `images`, `rmi`, `prune` and `login` as users run them: child processes of
// the built CLI against the real loopback registries of the shared OCI testbed;
// plus the pure progress renderer and formatters.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { TESTBED, startTestbed } from "../../oci/src/test-registry.js";
import { formatTable, humanSize, imagesTable, redraw, renderProgress, shortDigest, timeAgo } from "./cli-images.js";

const run = promisify(execFile);
const CLI = fileURLToPath(new URL("../dist/cli.js", import.meta.url));
const { plain: PLAIN, tlsBasic: TLS_BASIC, ca: CA } = TESTBED;

const why = !existsSync(CLI) ? `build @msb/sdk first (${CLI} missing)` : startTestbed();
if (why !== undefined) console.warn(`msb image command tests skipped: ${why}`);

const home = mkdtempSync(join(tmpdir(), "msb-cli-images-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function msb(...args: string[]): Promise<Result> {
  return msbIn({ MSB_HOME: home }, ...args);
}

async function msbIn(extraEnv: Record<string, string>, ...args: string[]): Promise<Result> {
  return msbWithStdin(extraEnv, "", ...args);
}

async function msbWithStdin(extraEnv: Record<string, string>, input: string, ...args: string[]): Promise<Result> {
  const env = { ...process.env, ...extraEnv };
  try {
    const child = run(process.execPath, [CLI, ...args], { env });
    child.child.stdin?.end(input);
    const { stdout, stderr } = await child;
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe.skipIf(why !== undefined)("msb pull / images / rmi against the loopback registry", () => {
  const ref = `${PLAIN}/busybox:latest`;

  it("pulls with --insecure, printing plain lines when stdout is not a TTY", async () => {
    const result = await msb("pull", ref, "--insecure");
    expect(result.stderr).toBe("");
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split("\n");
    expect(lines[0]).toBe(`pulling ${ref}`);
    expect(lines.at(-1)).toMatch(new RegExp(`^pulled ${ref.replace(/[.]/g, "\\.")} sha256:[0-9a-f]{64}$`));
    const layers = lines.slice(1, -1);
    expect(layers.length).toBeGreaterThan(0);
    for (const line of layers) expect(line).toMatch(/^layer sha256:[0-9a-f]{64} (done|already in the store) \(\d+(\.\d)? (B|KiB|MiB)\)$/);
    expect(result.stdout).not.toContain("\x1b[");
    expect(readdirSync(join(home, "cache", "layers", "sha256")).filter((n) => !n.startsWith(".")).length).toBe(layers.length);
  });

  it("prints one JSON object with --json, config included", async () => {
    const result = await msb("pull", ref, "--insecure", "--json");
    expect(result.code).toBe(0);
    const json = JSON.parse(result.stdout) as {
      reference: string;
      digest: string;
      platform: string;
      layers: { digest: string; size: number; dir: string }[];
      config: Record<string, unknown>;
    };
    expect(json).toMatchObject({ reference: ref, platform: "linux/amd64", created: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) as unknown });
    expect(json.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(json.layers.length).toBeGreaterThan(0);
    for (const layer of json.layers) expect(existsSync(join(layer.dir, "bin", "busybox"))).toBe(true);
    expect(Object.keys(json.config).sort()).toEqual(["Cmd", "Entrypoint", "Env", "ExposedPorts", "User", "WorkingDir"]);
    expect(json.config.Cmd).toEqual(["/bin/sh"]);
    expect(json.config.Env).toEqual(expect.arrayContaining([expect.stringMatching(/^PATH=/)]));
  });

  it("lists the image with `images --json` and in the table", async () => {
    const listed = await msb("images", "--json");
    expect(listed.code).toBe(0);
    const images = JSON.parse(listed.stdout) as { reference: string; digest: string; size: number; created: string; pulledAt: string }[];
    expect(images).toHaveLength(1);
    expect(images[0]).toMatchObject({ reference: ref, digest: expect.stringMatching(/^sha256:/) as unknown });
    expect(images[0]!.size).toBeGreaterThan(100_000);
    const table = await msb("images");
    expect(table.code).toBe(0);
    const [header, row, ...rest] = table.stdout.trimEnd().split("\n");
    expect(header).toMatch(/^REFERENCE\s+DIGEST\s+PLATFORM\s+CREATED\s+SIZE\s+PULLED$/);
    const created = timeAgo(images[0]!.created, Date.now());
    expect(created).not.toBe("");
    expect(row).toMatch(new RegExp(`^${ref.replace(/[.]/g, "\\.")}\\s+${shortDigest(images[0]!.digest)}\\s+linux/amd64\\s+${created}\\s+[\\d.]+ (KiB|MiB)\\s+just now$`));
    expect(rest).toEqual([]);
  });

  it("prunes blobs no image uses and temps of crashed pulls, keeping the image", async () => {
    const blobs = join(home, "cache", "blobs", "sha256");
    const layers = join(home, "cache", "layers", "sha256");
    const stray = createHash("sha256").update("left by an interrupted removal").digest("hex");
    writeFileSync(join(blobs, stray), "left by an interrupted removal");
    const orphan = join(layers, `.tmp-${stray}-999999-abcdef`);
    mkdirSync(orphan);
    const kept = readdirSync(layers).filter((n) => !n.startsWith("."));
    expect(await msb("prune")).toMatchObject({ code: 0, stdout: "pruned 0 layers and 1 blob\n" });
    expect(existsSync(join(blobs, stray))).toBe(false);
    expect(existsSync(orphan)).toBe(false);
    expect(readdirSync(layers).filter((n) => !n.startsWith("."))).toEqual(kept);
    expect(JSON.parse((await msb("images", "--json")).stdout)).toHaveLength(1);
    const again = await msb("prune", "--json");
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toEqual({ layers: [], blobs: [] });
    expect(await msb("prune", "extra")).toMatchObject({ code: 2 });
  });

  it("removes it with rmi, leaving images empty and the layers gone; a second rmi exits 1", async () => {
    const removed = await msb("rmi", ref);
    expect(removed).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^removed ${ref.replace(/[.]/g, "\\.")}`)) as unknown });
    const listed = await msb("images", "--json");
    expect(JSON.parse(listed.stdout)).toEqual([]);
    expect((await msb("images")).stdout.trimEnd().split("\n")).toHaveLength(1);
    expect(readdirSync(join(home, "cache", "layers", "sha256")).filter((n) => !n.startsWith("."))).toEqual([]);
    const again = await msb("rmi", ref);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/no image 127\.0\.0\.1:5000\/busybox:latest in the store .*ERR_OCI_IMAGE_NOT_FOUND/);
  });

  it("exits 1 with ERR_OCI_INSECURE when pulling over plain HTTP without --insecure", async () => {
    const result = await msb("pull", ref);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^msb: ERR_OCI_INSECURE: .*--insecure/);
    expect(JSON.parse((await msb("images", "--json")).stdout)).toEqual([]);
  });

  it("exits 2 naming the input for an invalid reference, platform, CA file or option", async () => {
    const bad = await msb("pull", "Not A Ref!");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/invalid image reference "Not A Ref!"/);
    const platform = await msb("pull", ref, "--platform", "amd64");
    expect(platform).toMatchObject({ code: 2, stderr: expect.stringMatching(/invalid --platform "amd64"/) as unknown });
    const ca = await msb("pull", ref, "--ca-cert", join(home, "no-such.pem"));
    expect(ca).toMatchObject({ code: 2, stderr: expect.stringMatching(/cannot read --ca-cert ".*no-such\.pem"/) as unknown });
    const option = await msb("pull", ref, "--frobnicate");
    expect(option).toMatchObject({ code: 2, stderr: expect.stringMatching(/frobnicate/) as unknown });
    expect(await msb("pull")).toMatchObject({ code: 2 });
    expect(await msb("rmi", "busybox:bad tag")).toMatchObject({ code: 2, stderr: expect.stringMatching(/invalid image reference "busybox:bad tag"/) as unknown });
    expect(await msb("images", "extra")).toMatchObject({ code: 2 });
  });
});

describe.skipIf(why !== undefined)("msb pull over TLS and on a terminal", () => {
  it("pulls from the private-CA Basic-auth registry with --ca-cert and Docker's config.json", async () => {
    const dir = mkdtempSync(join(home, "tls-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ auths: { [TLS_BASIC]: { auth: Buffer.from("testuser:testpassword").toString("base64") } } }));
    const ref = `${TLS_BASIC}/busybox:latest`;
    const untrusted = await msbIn({ MSB_HOME: dir, DOCKER_CONFIG: dir }, "pull", ref);
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toMatch(/^msb: ERR_OCI_HTTP: .*certificate/);
    const pulled = await msbIn({ MSB_HOME: dir, DOCKER_CONFIG: dir }, "pull", ref, "--ca-cert", CA, "--json");
    expect(pulled.code).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ reference: ref, config: { Cmd: ["/bin/sh"] } });
    const anonymous = await msbIn({ MSB_HOME: dir, DOCKER_CONFIG: join(dir, "none") }, "pull", `${TLS_BASIC}/busybox:docker`, "--ca-cert", CA);
    expect(anonymous).toMatchObject({ code: 1, stderr: expect.stringMatching(/^msb: ERR_OCI_UNAUTHORIZED: /) as unknown });
  });

  it("logs in to the TLS + Basic and the token registries, saving Docker's config.json that pull then uses", async () => {
    const dir = mkdtempSync(join(home, "login-"));
    const env = { MSB_HOME: dir, DOCKER_CONFIG: join(dir, "docker") };
    const config = join(dir, "docker", "config.json");
    const refused = await msbWithStdin(env, "wrong\n", "login", TLS_BASIC, "-u", "testuser", "--password-stdin", "--ca-cert", CA);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringMatching(/^msb: ERR_OCI_UNAUTHORIZED: /) as unknown });
    expect(existsSync(config)).toBe(false);
    expect(await msbWithStdin(env, "testpassword\n", "login", TLS_BASIC, "-u", "testuser")).toMatchObject({ code: 2, stderr: expect.stringMatching(/--password-stdin/) as unknown });
    expect(await msbWithStdin(env, "testpassword\n", "login", "not a host", "-u", "testuser", "--password-stdin")).toMatchObject({ code: 2 });

    const basic = await msbWithStdin(env, "testpassword\n", "login", TLS_BASIC, "-u", "testuser", "--password-stdin", "--ca-cert", CA);
    expect(basic).toMatchObject({ code: 0, stdout: `Login Succeeded: credentials for ${TLS_BASIC} saved in ${config}\n` });
    const token = await msbWithStdin(env, "testpassword", "login", TESTBED.token, "-u", "testuser", "--password-stdin", "--insecure");
    expect(token.code).toBe(0);
    const auths = (JSON.parse(readFileSync(config, "utf8")) as { auths: Record<string, { auth: string }> }).auths;
    expect(auths).toEqual({
      [TLS_BASIC]: { auth: Buffer.from("testuser:testpassword").toString("base64") },
      [TESTBED.token]: { auth: Buffer.from("testuser:testpassword").toString("base64") },
    });
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect((await msbIn(env, "pull", `${TLS_BASIC}/busybox:latest`, "--ca-cert", CA)).code).toBe(0);
    // private/* on the token registry is refused to anonymous pulls.
    expect((await msbIn(env, "pull", `${TESTBED.token}/private/busybox:latest`, "--insecure")).code).toBe(0);
  });

  it.skipIf(!existsSync("/usr/bin/script"))("draws progress bars in place when stdout is a TTY (under script(1))", async () => {
    const dir = mkdtempSync(join(home, "tty-"));
    const command = `MSB_HOME=${dir} ${process.execPath} ${CLI} pull ${PLAIN}/busybox:latest --insecure`;
    const { stdout } = await run("/usr/bin/script", ["-qec", command, "/dev/null"]);
    const out = stdout.replace(/\r\n/g, "\n");
    expect(out).toContain(`pulling ${PLAIN}/busybox:latest`);
    expect(out).toContain("\x1b[1A\r\x1b[2K");
    expect(out).toMatch(/[0-9a-f]{12}: \[=+\] 1\.0 MiB \/ 1\.0 MiB done/);
    expect(out).not.toMatch(/^layer sha256:/m);
    expect(out).toMatch(/pulled 127\.0\.0\.1:5000\/busybox:latest sha256:[0-9a-f]{64}\n$/);
  });
});

describe("progress renderer", () => {
  const a = `sha256:${"a".repeat(64)}`;
  const b = `sha256:${"b".repeat(64)}`;
  const manifest = {
    type: "manifest",
    reference: "docker.io/library/x:latest",
    digest: `sha256:${"c".repeat(64)}`,
    layers: [
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: a, size: 2048 },
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: b, size: 3 * 1024 * 1024 },
    ],
  } as const;

  it("draws one line per layer in manifest order: digest prefix, bar, bytes done/total, percentage", () => {
    expect(renderProgress([manifest], 10)).toEqual(["aaaaaaaaaaaa: waiting", "bbbbbbbbbbbb: waiting"]);
    expect(
      renderProgress(
        [
          manifest,
          { type: "layer-start", digest: b, size: 3 * 1024 * 1024 },
          { type: "layer-start", digest: a, size: 2048 },
          { type: "layer-progress", digest: b, bytes: 1024 * 1024, size: 3 * 1024 * 1024 },
          { type: "layer-progress", digest: a, bytes: 1024, size: 2048 },
          { type: "layer-progress", digest: a, bytes: 2048, size: 2048 },
          { type: "layer-done", digest: a, cached: false },
        ],
        10,
      ),
    ).toEqual(["aaaaaaaaaaaa: [==========] 2.0 KiB / 2.0 KiB done", "bbbbbbbbbbbb: [===>      ] 1.0 MiB / 3.0 MiB 33%"]);
  });

  it("shows cached layers and starts at 0%", () => {
    expect(
      renderProgress(
        [manifest, { type: "layer-start", digest: a, size: 2048 }, { type: "layer-done", digest: a, cached: true }, { type: "layer-start", digest: b, size: 3 * 1024 * 1024 }],
        4,
      ),
    ).toEqual(["aaaaaaaaaaaa: already in the store (2.0 KiB)", "bbbbbbbbbbbb: [>   ] 0 B / 3.0 MiB 0%"]);
  });

  it("redraws in place with ANSI cursor-up and clear-line", () => {
    expect(redraw(0, ["x", "y"])).toBe("\r\x1b[2Kx\n\r\x1b[2Ky\n");
    expect(redraw(2, ["x", "y"])).toBe("\x1b[2A\r\x1b[2Kx\n\r\x1b[2Ky\n");
  });
});

describe("formatters", () => {
  it("formats sizes, digests, times and tables", () => {
    expect([humanSize(0), humanSize(1023), humanSize(1536), humanSize(5 * 1024 ** 3)]).toEqual(["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]);
    expect(shortDigest(`sha256:0123456789abcdef${"0".repeat(48)}`)).toBe("0123456789ab");
    const now = Date.parse("2026-01-10T12:00:00Z");
    expect(timeAgo("2026-01-10T11:59:30Z", now)).toBe("just now");
    expect(timeAgo("2026-01-10T11:55:00Z", now)).toBe("5 minutes ago");
    expect(timeAgo("2026-01-10T11:00:00Z", now)).toBe("1 hour ago");
    expect(timeAgo("2026-01-01T12:00:00Z", now)).toBe("1 week ago");
    expect(timeAgo(undefined, now)).toBe("");
    expect(formatTable([["A", "BB"], ["ccc", "d"]])).toEqual(["A     BB", "ccc   d"]);
    const record = {
      reference: "docker.io/library/busybox:latest",
      digest: `sha256:${"f".repeat(64)}`,
      indexDigest: undefined,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      platform: "linux/amd64",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${"1".repeat(64)}`, size: 1024 },
      layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: `sha256:${"2".repeat(64)}`, size: 1024 * 1024 }],
      pulledAt: "2026-01-10T10:00:00Z",
    };
    expect(imagesTable([{ ...record, created: "2025-12-01T00:00:00Z" }, { ...record, reference: "msb.local/undated:1" }], now)).toEqual([
      "REFERENCE                          DIGEST         PLATFORM      CREATED       SIZE      PULLED",
      "docker.io/library/busybox:latest   ffffffffffff   linux/amd64   1 month ago   1.0 MiB   2 hours ago",
      "msb.local/undated:1                ffffffffffff   linux/amd64   -             1.0 MiB   2 hours ago",
    ]);
  });
});
