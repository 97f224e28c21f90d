// Pulls from the real registries of the shared testbed (../shared/testbed/oci).
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { decodeOverrideStat, OVERRIDE_STAT_XATTR } from "@msb/fs";
import { getxattr } from "@msb/native";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pull } from "./pull.js";
import { ImageStore } from "./store.js";
import { startTestbed, TESTBED } from "./test-registry.js";

const skip = startTestbed();
if (skip !== undefined) console.warn(`skipping registry tests: ${skip}`);

const base = mkdtempSync(join(tmpdir(), "msb-oci-reg-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const home = (): string => join(base, String(n++));

function storeIsClean(dir: string): void {
  for (const sub of ["blobs/sha256", "layers/sha256", "images"]) {
    expect(readdirSync(join(dir, "cache", sub)).filter((name) => name.startsWith(".tmp-"))).toEqual([]);
  }
}

describe.skipIf(skip !== undefined)("pull from the testbed registries", () => {
  let dockerConfig = "";
  beforeAll(() => {
    dockerConfig = mkdtempSync(join(base, "docker-"));
    const auth = Buffer.from(`${TESTBED.user}:${TESTBED.pass}`).toString("base64");
    writeFileSync(join(dockerConfig, "config.json"), JSON.stringify({ auths: { [TESTBED.tlsBasic]: { auth }, [TESTBED.token]: { username: TESTBED.user, password: TESTBED.pass } } }));
  });

  it("plain HTTP with insecure: busybox:latest (OCI, gzip)", async () => {
    const h = home();
    const image = await pull(`${TESTBED.plain}/busybox:latest`, { home: h, insecure: [TESTBED.plain] });
    expect(image.reference).toBe(`${TESTBED.plain}/busybox:latest`);
    expect(image.platform).toBe("linux/amd64");
    expect(image.imageConfig.cmd).toEqual(["/bin/sh"]);
    expect(image.imageConfig.env).toContain("PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    expect(image.imageConfig.workingDir).toBe("/");
    // umoci stamps the build time into the config; the record keeps it for listings.
    expect(image.imageConfig.created).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(image.created).toBe(image.imageConfig.created);
    const root = image.layerDirs[0]!;
    expect(statSync(join(root, "bin/busybox")).size).toBeGreaterThan(100_000);
    expect(decodeOverrideStat(getxattr(join(root, "home/app"), OVERRIDE_STAT_XATTR))).toMatchObject({ uid: 1000, gid: 1000 });
    expect(decodeOverrideStat(getxattr(join(root, "tmp"), OVERRIDE_STAT_XATTR)).mode).toBe(0o41777);
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toContain("app:x:1000");
    storeIsClean(h);
  });

  it("refuses plain HTTP without the insecure opt-in", async () => {
    await expect(pull(`${TESTBED.plain}/busybox:latest`, { home: home(), retries: 0 })).rejects.toMatchObject({ code: "ERR_OCI_INSECURE" });
  });

  it("TLS + Basic with a private CA and credentials from DOCKER_CONFIG: busybox:docker (schema 2)", async () => {
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = dockerConfig;
    try {
      const image = await pull(`${TESTBED.tlsBasic}/busybox:docker`, { home: home(), caFile: TESTBED.ca });
      expect(image.mediaType).toBe("application/vnd.docker.distribution.manifest.v2+json");
      expect(image.imageConfig.cmd).toEqual(["/bin/sh"]);
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
    }
  });

  it("TLS + Basic: no credentials, wrong credentials, unknown CA", async () => {
    const empty = mkdtempSync(join(base, "nocreds-"));
    await expect(pull(`${TESTBED.tlsBasic}/busybox:latest`, { home: home(), caFile: TESTBED.ca, dockerConfig: empty })).rejects.toMatchObject({ code: "ERR_OCI_UNAUTHORIZED" });
    await expect(pull(`${TESTBED.tlsBasic}/busybox:latest`, { home: home(), caFile: TESTBED.ca, credentials: { username: "testuser", password: "wrong" } })).rejects.toMatchObject({
      code: "ERR_OCI_UNAUTHORIZED",
    });
    await expect(pull(`${TESTBED.tlsBasic}/busybox:latest`, { home: home(), dockerConfig, retries: 0 })).rejects.toMatchObject({ code: "ERR_OCI_HTTP" });
  });

  it("Bearer token: anonymous public pull, private repository needs credentials", async () => {
    const public_ = await pull(`${TESTBED.token}/busybox:zstd`, { home: home(), insecure: true, dockerConfig: mkdtempSync(join(base, "anon-")) });
    expect(public_.layerDirs).toHaveLength(1);
    await expect(pull(`${TESTBED.token}/private/busybox:latest`, { home: home(), insecure: true, dockerConfig: mkdtempSync(join(base, "anon-")) })).rejects.toMatchObject({
      code: "ERR_OCI_UNAUTHORIZED",
    });
    const priv = await pull(`${TESTBED.token}/private/busybox:latest`, { home: home(), insecure: true, dockerConfig });
    expect(priv.imageConfig.cmd).toEqual(["/bin/sh"]);
  });

  it("follows the redirecting registry's 307 to the blob host", async () => {
    const image = await pull(`${TESTBED.redirect}/busybox:latest`, { home: home(), insecure: true });
    expect(statSync(join(image.layerDirs[0]!, "bin/busybox")).isFile()).toBe(true);
  });

  it("three processes pulling the same image share one intact store", async () => {
    const h = home();
    const run = promisify(execFile);
    const child = join(import.meta.dirname, "test-pull-child.ts");
    const outputs = await Promise.all(
      [0, 1, 2].map(() => run(process.execPath, ["--import", "tsx", child, `${TESTBED.plain}/busybox:latest`, h], { cwd: join(import.meta.dirname, "..") })),
    );
    const results = outputs.map((o) => JSON.parse(o.stdout) as { digest: string; layers: string[] });
    expect(new Set(results.map((r) => r.digest)).size).toBe(1);
    storeIsClean(h);
    expect(readdirSync(join(h, "cache", "layers", "sha256"))).toHaveLength(1);
    expect(readdirSync(join(h, "cache", "locks"))).toEqual([]);
    const store = new ImageStore({ home: h });
    const details = await store.inspectImage(`${TESTBED.plain}/busybox:latest`);
    for (const layer of details.layers) await store.readBlob(layer);
  });

  it("counts layer references: removing one of two images sharing a layer keeps it", async () => {
    const h = home();
    const a = await pull(`${TESTBED.plain}/busybox:latest`, { home: h, insecure: true });
    const b = await pull(`${TESTBED.plain}/busybox:docker`, { home: h, insecure: true });
    expect(a.layers[0]!.digest).toBe(b.layers[0]!.digest);
    const store = new ImageStore({ home: h });
    expect((await store.listImages()).map((i) => i.reference)).toEqual([`${TESTBED.plain}/busybox:docker`, `${TESTBED.plain}/busybox:latest`]);
    const removed = await store.removeImage(`${TESTBED.plain}/busybox:latest`);
    expect(removed.layers).toEqual([]);
    expect(removed.blobs).toContain(a.digest);
    expect(statSync(a.layerDirs[0]!).isDirectory()).toBe(true);
    await expect(store.inspectImage(`${TESTBED.plain}/busybox:latest`)).rejects.toMatchObject({ code: "ERR_OCI_IMAGE_NOT_FOUND" });
    const last = await store.removeImage(`${TESTBED.plain}/busybox:docker`);
    expect(last.layers).toEqual([a.layers[0]!.digest]);
    expect(readdirSync(join(h, "cache", "blobs", "sha256"))).toEqual([]);
    writeFileSync(join(h, "cache", "blobs", "sha256", "f".repeat(64)), "orphan");
    expect((await store.prune()).blobs).toEqual([`sha256:${"f".repeat(64)}`]);
    await expect(store.removeImage("busybox")).rejects.toMatchObject({ code: "ERR_OCI_IMAGE_NOT_FOUND" });
  });
});
