// Imports OCI image layouts built here (and the built-in busybox layout when the guest assets exist).
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { afterAll, describe, expect, it } from "vitest";
import { sha256Digest, type Descriptor } from "./digest.js";
import type { PullEvent } from "./ingest.js";
import { importOciLayout } from "./layout.js";
import { ImageStore } from "./store.js";
import { buildTar } from "./test-tar.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
const MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const INDEX = "application/vnd.oci.image.index.v1+json";
const base = mkdtempSync(join(tmpdir(), "msb-oci-layout-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
function fresh(): { layoutDir: string; store: ImageStore; home: string } {
  const dir = join(base, String(n++));
  const home = join(dir, "home");
  return { layoutDir: join(dir, "layout"), store: new ImageStore({ home }), home };
}

/** Writes a blob into the layout and returns its descriptor. */
function blob(layoutDir: string, mediaType: string, bytes: Buffer): Descriptor {
  const desc = { mediaType, digest: sha256Digest(bytes), size: bytes.length };
  mkdirSync(join(layoutDir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(layoutDir, "blobs", "sha256", desc.digest.slice("sha256:".length)), bytes);
  return desc;
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

/** An image (one gzip layer holding `file`) in the layout: its manifest's descriptor. */
async function image(layoutDir: string, file: string, data: string, architecture = "amd64"): Promise<Descriptor> {
  const tar = await buildTar([{ header: { name: file }, data }]);
  const layer = blob(layoutDir, GZIP, gzipSync(tar));
  const config = blob(
    layoutDir,
    "application/vnd.oci.image.config.v1+json",
    json({ architecture, os: "linux", config: { Env: ["PATH=/bin"], Cmd: ["sh"] }, rootfs: { type: "layers", diff_ids: [sha256Digest(tar)] } }),
  );
  return blob(layoutDir, MANIFEST, json({ schemaVersion: 2, mediaType: MANIFEST, config, layers: [layer] }));
}

function writeIndex(layoutDir: string, manifests: readonly object[]): void {
  writeFileSync(join(layoutDir, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(join(layoutDir, "index.json"), json({ schemaVersion: 2, mediaType: INDEX, manifests }));
}

function named(desc: Descriptor, name: string): object {
  return { ...desc, annotations: { "org.opencontainers.image.ref.name": name } };
}

/** Nothing recorded, no temp anywhere, and not the given layer. */
function expectNothingStored(home: string, layerDigest: string): void {
  const hex = layerDigest.slice("sha256:".length);
  for (const sub of ["images", "layers/sha256", "blobs/sha256"]) {
    const dir = join(home, "cache", sub);
    const names = existsSync(dir) ? readdirSync(dir) : [];
    expect(names.filter((name) => name.startsWith(".tmp-") || name === hex || sub === "images"), sub).toEqual([]);
  }
}

describe("importOciLayout", () => {
  it("stores the image as a pull would, and a second import changes nothing", async () => {
    const { layoutDir, store } = fresh();
    writeIndex(layoutDir, [named(await image(layoutDir, "etc/hello", "hi!"), "latest")]);
    const events: PullEvent["type"][] = [];
    const details = await importOciLayout(store, layoutDir, "msb.local/test:latest", { onProgress: (e) => events.push(e.type) });
    expect(details.reference).toBe("msb.local/test:latest");
    expect(details.platform).toBe("linux/amd64");
    expect(details.imageConfig.cmd).toEqual(["sh"]);
    expect(readFileSync(join(details.layerDirs[0]!, "etc/hello"), "utf8")).toBe("hi!");
    for (const digest of [details.digest, details.config.digest, details.layers[0]!.digest]) expect(await store.hasBlob(digest)).toBe(true);
    expect(events).toContain("layer-done");

    const record = readdirSync(join(store.root, "images"))[0]!;
    const before = statSync(join(store.root, "images", record)).mtimeMs;
    const again: PullEvent["type"][] = [];
    const second = await importOciLayout(store, layoutDir, "msb.local/test", { onProgress: (e) => again.push(e.type) });
    expect(second.pulledAt).toBe(details.pulledAt);
    expect(second.layerDirs).toEqual(details.layerDirs);
    expect(again).toEqual([]);
    expect(statSync(join(store.root, "images", record)).mtimeMs).toBe(before);
  });

  it("picks the entry named like the reference's tag, and a platform from a nested index", async () => {
    const { layoutDir, store } = fresh();
    const v1 = await image(layoutDir, "v", "one");
    const amd64 = await image(layoutDir, "v", "two amd64");
    const arm64 = await image(layoutDir, "v", "two arm64", "arm64");
    const nested = blob(
      layoutDir,
      INDEX,
      json({
        schemaVersion: 2,
        mediaType: INDEX,
        manifests: [
          { ...arm64, platform: { os: "linux", architecture: "arm64" } },
          { ...amd64, platform: { os: "linux", architecture: "amd64" } },
        ],
      }),
    );
    writeIndex(layoutDir, [named(v1, "v1"), named(nested, "v2")]);
    const one = await importOciLayout(store, layoutDir, "msb.local/multi:v1");
    expect(readFileSync(join(one.layerDirs[0]!, "v"), "utf8")).toBe("one");
    expect(one.indexDigest).toBeUndefined();
    const two = await importOciLayout(store, layoutDir, "msb.local/multi:v2");
    expect(readFileSync(join(two.layerDirs[0]!, "v"), "utf8")).toBe("two amd64");
    expect(two.digest).toBe(amd64.digest);
    expect(two.indexDigest).toBe(nested.digest);
    const arm = await importOciLayout(new ImageStore({ home: join(layoutDir, "..", "arm-home") }), layoutDir, "msb.local/multi:v2", { platform: "linux/arm64" });
    expect(readFileSync(join(arm.layerDirs[0]!, "v"), "utf8")).toBe("two arm64");
  });

  it("a layer that differs from its digest fails with ERR_OCI_DIGEST and records nothing", async () => {
    const { layoutDir, store, home } = fresh();
    const manifestDesc = await image(layoutDir, "f", "good data");
    writeIndex(layoutDir, [manifestDesc]);
    const manifest = JSON.parse(readFileSync(join(layoutDir, "blobs/sha256", manifestDesc.digest.slice(7)), "utf8")) as { layers: Descriptor[] };
    const layer = manifest.layers[0]!;
    const layerPath = join(layoutDir, "blobs/sha256", layer.digest.slice(7));
    const corrupt = readFileSync(layerPath);
    corrupt[4]! ^= 0xff; // gzip's MTIME: still a valid gzip of the same tar, so only the digest can tell
    writeFileSync(layerPath, corrupt);
    await expect(importOciLayout(store, layoutDir, "msb.local/bad:latest")).rejects.toMatchObject({ name: "OciError", code: "ERR_OCI_DIGEST", input: layer.digest });
    expectNothingStored(home, layer.digest);
  });

  it("a manifest that differs from its digest fails before anything is written", async () => {
    const { layoutDir, store, home } = fresh();
    const manifestDesc = await image(layoutDir, "f", "data");
    writeIndex(layoutDir, [manifestDesc]);
    writeFileSync(join(layoutDir, "blobs/sha256", manifestDesc.digest.slice(7)), json({ schemaVersion: 2, mediaType: MANIFEST, layers: [] }));
    await expect(importOciLayout(store, layoutDir, "msb.local/bad:latest")).rejects.toMatchObject({ code: "ERR_OCI_DIGEST", input: manifestDesc.digest });
    expect(existsSync(join(home, "cache"))).toBe(false);
  });

  it("a missing blob or a directory that is no layout is ERR_OCI_NOT_FOUND", async () => {
    const { layoutDir, store } = fresh();
    const manifestDesc = await image(layoutDir, "f", "data");
    await expect(importOciLayout(store, layoutDir, "msb.local/x:latest")).rejects.toMatchObject({ code: "ERR_OCI_NOT_FOUND", input: join(layoutDir, "oci-layout") });
    writeIndex(layoutDir, [manifestDesc]);
    rmSync(join(layoutDir, "blobs/sha256", manifestDesc.digest.slice(7)));
    await expect(importOciLayout(store, layoutDir, "msb.local/x:latest")).rejects.toMatchObject({ code: "ERR_OCI_NOT_FOUND", input: manifestDesc.digest });
    expect(await store.getImage("msb.local/x:latest")).toBeUndefined();
  });
});

/** The built-in busybox layout that scripts/setup.sh builds into @msb/vmm's assets. */
const assetsDir = process.env.MSB_GUEST_ASSETS !== undefined && process.env.MSB_GUEST_ASSETS !== "" ? process.env.MSB_GUEST_ASSETS : fileURLToPath(new URL("../../vmm/assets", import.meta.url));
const busyboxLayout = join(assetsDir, "busybox-oci");
const busyboxMissing = !existsSync(join(busyboxLayout, "index.json"));
if (busyboxMissing) {
  console.warn(`skipping the busybox layout import: ${busyboxLayout} does not exist (bash scripts/setup.sh builds it; CI always has it)`);
}

describe.skipIf(busyboxMissing)("importOciLayout (built-in busybox layout)", () => {
  it("imports busybox with its applet symlinks, users and config", async () => {
    const { store } = fresh();
    const details = await importOciLayout(store, busyboxLayout, "msb.local/busybox:latest");
    expect(details.platform).toBe("linux/amd64");
    expect(details.imageConfig.cmd).toEqual(["sh"]);
    expect(details.imageConfig.env).toEqual(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    const root = details.layerDirs[0]!;
    expect(statSync(join(root, "bin/busybox")).isFile()).toBe(true);
    expect(readlinkSync(join(root, "bin/sh"))).toBe("busybox");
    expect(readlinkSync(join(root, "usr/bin/env"))).toBe("../../bin/busybox");
    expect(readFileSync(join(root, "etc/passwd"), "utf8")).toMatch(/^root:x:0:0:root:\/root:\/bin\/sh$/m);
    expect(readFileSync(join(root, "etc/group"), "utf8")).toMatch(/^nogroup:x:65534:$/m);
  });
});
