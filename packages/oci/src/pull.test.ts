// Pulls from a fake in-process registry that misbehaves on purpose.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { sha256Digest } from "./digest.js";
import { pull } from "./pull.js";
import { buildTar, zstdCli } from "./test-tar.js";
import { FakeRegistry, serveRange } from "./test-registry.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const base = mkdtempSync(join(tmpdir(), "msb-oci-pull-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let registry: FakeRegistry;
let host = "";
let home = "";
let n = 0;
beforeEach(async () => {
  registry = new FakeRegistry();
  host = await registry.start();
  home = join(base, String(n++));
});
afterEach(() => registry.stop());

async function layer(name: string, data: string): Promise<Buffer> {
  return gzipSync(await buildTar([{ header: { name }, data }]));
}

/** Nothing of a failed pull is left: no image, no layer, no blob of the layer, no temp. */
function expectNothingStored(layerDigest: string): void {
  const hex = layerDigest.slice("sha256:".length);
  for (const sub of ["images", "layers/sha256", "blobs/sha256"]) {
    const dir = join(home, "cache", sub);
    const names = existsSync(dir) ? readdirSync(dir) : [];
    expect(names.filter((name) => name.startsWith(".tmp-") || name === hex || sub === "images"), sub).toEqual([]);
  }
}

describe("pull (fake registry)", () => {
  it("unpacks a zstd layer over a gzip layer, bounded concurrency", async () => {
    const tar = await buildTar([{ header: { name: "z/file" }, data: "zstd!" }]);
    const zstd = zstdCli(tar, "pull of a zstd layer");
    if (zstd === undefined) return;
    registry.addImage("img", "v1", [
      { body: await layer("g/file", "gzip!"), mediaType: GZIP },
      { body: zstd, mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" },
      { body: await buildTar([{ header: { name: "t/file" }, data: "tar!" }]), mediaType: "application/vnd.oci.image.layer.v1.tar" },
    ]);
    const events: string[] = [];
    const image = await pull(`${host}/img:v1`, { home, insecure: true, concurrency: 2, onProgress: (e) => events.push(e.type) });
    expect(readFileSync(join(image.layerDirs[0]!, "g/file"), "utf8")).toBe("gzip!");
    expect(readFileSync(join(image.layerDirs[1]!, "z/file"), "utf8")).toBe("zstd!");
    expect(readFileSync(join(image.layerDirs[2]!, "t/file"), "utf8")).toBe("tar!");
    expect(events.filter((e) => e === "layer-done")).toHaveLength(3);
    const again = await pull(`${host}/img:v1`, { home, insecure: true });
    expect(again.layerDirs).toEqual(image.layerDirs);
  });

  it("a corrupted blob fails the pull and leaves nothing in the store", async () => {
    const good = await buildTar([{ header: { name: "f" }, data: "good data" }]);
    const digest = sha256Digest(good);
    registry.addImage("img", "bad", [{ body: good, mediaType: "application/vnd.oci.image.layer.v1.tar" }]);
    const corrupt = Buffer.from(good);
    corrupt[512] = "G".charCodeAt(0);
    registry.blobs.set(digest, corrupt);
    await expect(pull(`${host}/img:bad`, { home, insecure: true })).rejects.toMatchObject({ code: "ERR_OCI_DIGEST", input: digest });
    expectNothingStored(digest);
  });

  it("a blob longer than its descriptor fails as soon as it overflows", async () => {
    const body = await layer("f", "x");
    registry.addImage("img", "long", [{ body, mediaType: GZIP }]);
    const digest = sha256Digest(body);
    registry.blobs.set(digest, Buffer.concat([body, Buffer.alloc(10)]));
    await expect(pull(`${host}/img:long`, { home, insecure: true })).rejects.toMatchObject({ code: "ERR_OCI_DIGEST" });
    expectNothingStored(digest);
  });

  it("a dropped connection resumes with Range from the bytes received", async () => {
    const body = gzipSync(await buildTar([{ header: { name: "big" }, data: Buffer.alloc(300_000, 7) }]), { level: 0 });
    registry.addImage("img", "drop", [{ body, mediaType: GZIP }]);
    let dropped = false;
    registry.blobHook = (req, res, blob) => {
      if (blob.length !== body.length) return false;
      if (dropped) {
        serveRange(req, res, blob);
        return true;
      }
      dropped = true;
      res.writeHead(200, { "content-length": blob.length });
      res.write(blob.subarray(0, 100_000), () => setTimeout(() => res.destroy(), 20));
      return true;
    };
    const image = await pull(`${host}/img:drop`, { home, insecure: true, retryDelayMs: 1 });
    expect(readFileSync(join(image.layerDirs[0]!, "big"))).toHaveLength(300_000);
    const ranges = registry.requests.filter((r) => r.headers.range !== undefined).map((r) => r.headers.range);
    expect(ranges).toHaveLength(1);
    expect(Number(/^bytes=(\d+)-$/.exec(ranges[0]!)?.[1])).toBeGreaterThan(0);
  });

  it("skips forward when the server ignores Range after a drop", async () => {
    const body = gzipSync(await buildTar([{ header: { name: "big" }, data: Buffer.alloc(200_000, 3) }]), { level: 0 });
    registry.addImage("img", "norange", [{ body, mediaType: GZIP }]);
    let calls = 0;
    registry.blobHook = (_req, res, blob) => {
      if (blob.length !== body.length) return false;
      res.writeHead(200, { "content-length": blob.length });
      if (calls++ === 0) res.write(blob.subarray(0, 50_000), () => setTimeout(() => res.destroy(), 20));
      else res.end(blob);
      return true;
    };
    const image = await pull(`${host}/img:norange`, { home, insecure: true, retryDelayMs: 1 });
    expect(readFileSync(join(image.layerDirs[0]!, "big"))).toHaveLength(200_000);
    expect(calls).toBe(2);
  });

  it("retries 429 and 503 with backoff, then gives up after the bound", async () => {
    const body = await layer("f", "x");
    registry.addImage("img", "busy", [{ body, mediaType: GZIP }]);
    let failures = 2;
    registry.blobHook = (_req, res) => {
      if (failures-- <= 0) return false;
      res.writeHead(failures === 1 ? 429 : 503, { "retry-after": "0" }).end();
      return true;
    };
    await pull(`${host}/img:busy`, { home, insecure: true, retryDelayMs: 1 });
    registry.blobHook = (_req, res) => {
      res.writeHead(503).end();
      return true;
    };
    const other = await layer("g", "y");
    registry.addImage("img", "down", [{ body: other, mediaType: GZIP }]);
    await expect(pull(`${host}/img:down`, { home, insecure: true, retries: 2, retryDelayMs: 1 })).rejects.toMatchObject({ code: "ERR_OCI_HTTP", status: 503 });
  });

  it("does not forward Authorization across a blob redirect", async () => {
    const cdn = new FakeRegistry();
    const cdnHost = await cdn.start();
    try {
      const body = await layer("f", "via cdn");
      registry.addImage("img", "cdn", [{ body, mediaType: GZIP }]);
      for (const [digest, blob] of registry.blobs) cdn.blobs.set(digest, blob);
      registry.basic = "user:secret";
      registry.redirectTo = `http://${cdnHost}/v2/cdn/blobs/`;
      const image = await pull(`${host}/img:cdn`, { home, insecure: true, credentials: { username: "user", password: "secret" } });
      expect(readFileSync(join(image.layerDirs[0]!, "f"), "utf8")).toBe("via cdn");
      expect(registry.requests.some((r) => r.headers.authorization !== undefined)).toBe(true);
      expect(cdn.requests.length).toBeGreaterThan(0);
      expect(cdn.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
    } finally {
      await cdn.stop();
    }
  });

  it("selects the platform from an index, variant aware", async () => {
    const amd = registry.addImage("multi", "amd", [{ body: await layer("arch", "amd64"), mediaType: GZIP }]);
    const arm = registry.addImage("multi", "arm", [{ body: await layer("arch", "arm64"), mediaType: GZIP }], {});
    const size = (tag: string): number => registry.manifests.get(`multi/${tag}`)!.body.length;
    const type = "application/vnd.oci.image.manifest.v1+json";
    registry.addManifest(
      "multi",
      "latest",
      {
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          { mediaType: type, digest: arm, size: size("arm"), platform: { os: "linux", architecture: "arm64", variant: "v8" } },
          { mediaType: type, digest: amd, size: size("amd"), platform: { os: "linux", architecture: "amd64" } },
        ],
      },
      "application/vnd.oci.image.index.v1+json",
    );
    const image = await pull(`${host}/multi`, { home, insecure: true });
    expect(image.digest).toBe(amd);
    expect(image.indexDigest).toBeDefined();
    // The fake's configs all say amd64, so an arm64 pick is caught by the config check.
    await expect(pull(`${host}/multi`, { home, insecure: true, platform: "linux/arm64" })).rejects.toMatchObject({ code: "ERR_OCI_PLATFORM" });
    expect(registry.requests.some((r) => r.url.endsWith(arm))).toBe(true);
    await expect(pull(`${host}/multi`, { home, insecure: true, platform: "linux/s390x" })).rejects.toMatchObject({ code: "ERR_OCI_PLATFORM" });
  });

  it("verifies manifests against a pinned digest", async () => {
    registry.addImage("img", "v1", [{ body: await layer("f", "x"), mediaType: GZIP }]);
    const wrong = `sha256:${"0".repeat(64)}`;
    registry.manifests.set(`img/${wrong}`, registry.manifests.get("img/v1")!);
    await expect(pull(`${host}/img@${wrong}`, { home, insecure: true })).rejects.toMatchObject({ code: "ERR_OCI_DIGEST" });
    await expect(pull(`${host}/img:nope`, { home, insecure: true })).rejects.toMatchObject({ code: "ERR_OCI_NOT_FOUND" });
    const huge = { mediaType: "application/vnd.oci.image.config.v1+json", digest: `sha256:${"1".repeat(64)}`, size: 1 << 30 };
    registry.addManifest("img", "huge", { schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: huge, layers: [] }, "application/vnd.oci.image.manifest.v1+json");
    await expect(pull(`${host}/img:huge`, { home, insecure: true })).rejects.toMatchObject({ code: "ERR_OCI_MANIFEST" });
  });
});
