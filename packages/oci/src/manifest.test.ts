import { describe, expect, it } from "vitest";
import { sha256Digest } from "./digest.js";
import { parseImageConfig, parseManifest, parsePlatform, selectPlatform, type IndexEntry } from "./manifest.js";
import { RegistryClient } from "./registry.js";
import { FakeRegistry } from "./test-registry.js";

const D = (c: string): string => `sha256:${c.repeat(64)}`;
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const entry = (c: string, os: string, architecture: string, variant?: string): IndexEntry => ({
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest: D(c),
  size: 1,
  platform: { os, architecture, variant },
});

describe("parseManifest", () => {
  it("parses OCI and Docker manifests and indexes", () => {
    const layer = { mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: D("b"), size: 2 };
    const docker = parseManifest(
      json({ schemaVersion: 2, mediaType: "application/vnd.docker.distribution.manifest.v2+json", config: { mediaType: "x", digest: D("a"), size: 1 }, layers: [layer] }),
      "",
      "ref",
    );
    expect(docker).toMatchObject({ kind: "manifest", layers: [layer] });
    const list = parseManifest(json({ schemaVersion: 2, manifests: [{ mediaType: "m", digest: D("c"), size: 3, platform: { os: "linux", architecture: "arm", variant: "v7" } }] }), "application/vnd.docker.distribution.manifest.list.v2+json", "ref");
    expect(list).toEqual({ kind: "index", manifests: [{ mediaType: "m", digest: D("c"), size: 3, platform: { os: "linux", architecture: "arm", variant: "v7" } }] });
  });

  it.each([
    ["not json", Buffer.from("{"), ""],
    ["schema 1", json({ schemaVersion: 1 }), ""],
    ["bad digest", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "x", digest: "sha256:zz", size: 1 }, layers: [] }), ""],
    ["negative size", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "x", digest: D("a"), size: -1 }, layers: [] }), ""],
    ["foreign layer", json({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: { mediaType: "x", digest: D("a"), size: 1 }, layers: [{ mediaType: "application/x-bzip", digest: D("b"), size: 1 }] }), ""],
    ["unknown type", json({ schemaVersion: 2, mediaType: "application/vnd.example", layers: [] }), ""],
  ])("rejects %s", (_why, bytes, type) => {
    expect(() => parseManifest(bytes, type, "ref")).toThrow(expect.objectContaining({ code: "ERR_OCI_MANIFEST", input: "ref" }) as Error);
  });
});

describe("platforms", () => {
  const index = [entry("a", "linux", "arm", "v6"), entry("b", "linux", "arm", "v7"), entry("c", "linux", "arm64", "v8"), entry("d", "linux", "amd64"), entry("e", "unknown", "unknown")];

  it("selects by os, architecture and variant", () => {
    expect(selectPlatform(index, parsePlatform("linux/amd64"), "r").digest).toBe(D("d"));
    expect(selectPlatform(index, parsePlatform("linux/arm/v7"), "r").digest).toBe(D("b"));
    expect(selectPlatform(index, parsePlatform("linux/arm"), "r").digest).toBe(D("a"));
    expect(selectPlatform(index, parsePlatform("linux/arm64"), "r").digest).toBe(D("c"));
    expect(selectPlatform([entry("f", "linux", "arm64")], parsePlatform("linux/arm64/v8"), "r").digest).toBe(D("f"));
  });

  it("names what the index has when nothing matches", () => {
    expect(() => selectPlatform(index, parsePlatform("linux/riscv64"), "r")).toThrow(/linux\/arm\/v6, linux\/arm\/v7/);
    expect(() => parsePlatform("linux")).toThrow(expect.objectContaining({ code: "ERR_OCI_PLATFORM" }) as Error);
    expect(() => parsePlatform("linux/amd64/v1/x")).toThrow(expect.objectContaining({ code: "ERR_OCI_PLATFORM" }) as Error);
  });
});

describe("parseImageConfig", () => {
  it("exposes Env, Cmd, Entrypoint, WorkingDir, User and ExposedPorts", () => {
    const config = parseImageConfig(
      json({
        architecture: "amd64",
        os: "linux",
        created: "2026-03-01T12:00:00.123456789+01:00",
        config: { Env: ["A=1"], Cmd: ["sh"], Entrypoint: ["/init"], WorkingDir: "/app", User: "1000:1000", ExposedPorts: { "80/tcp": {} }, Labels: { a: "b" } },
        rootfs: { type: "layers", diff_ids: [D("a")] },
      }),
      "cfg",
    );
    expect(config).toEqual({
      architecture: "amd64",
      os: "linux",
      variant: undefined,
      env: ["A=1"],
      cmd: ["sh"],
      entrypoint: ["/init"],
      workingDir: "/app",
      user: "1000:1000",
      exposedPorts: ["80/tcp"],
      labels: { a: "b" },
      diffIds: [D("a")],
      created: "2026-03-01T11:00:00.123Z",
    });
    expect(parseImageConfig(json({}), "cfg")).toMatchObject({ env: [], cmd: undefined, exposedPorts: [] });
    expect(parseImageConfig(json({ created: "yesterday" }), "cfg").created).toBeUndefined();
    expect(() => parseImageConfig(json({ created: 1 }), "cfg")).toThrow(expect.objectContaining({ code: "ERR_OCI_MANIFEST" }) as Error);
    expect(() => parseImageConfig(json({ config: { Cmd: "sh" } }), "cfg")).toThrow(expect.objectContaining({ code: "ERR_OCI_MANIFEST" }) as Error);
  });
});

describe("RegistryClient bearer tokens", () => {
  it("caches a token per scope and fetches a new one after a 401", async () => {
    const registry = new FakeRegistry();
    const host = await registry.start();
    const client = new RegistryClient(host, { insecure: true, credentials: () => undefined });
    try {
      registry.bearer = true;
      const digest = registry.addImage("img", "v1", []);
      await client.ping();
      const first = await client.getManifest("img", "v1");
      expect(first.digest).toBe(digest);
      await client.getManifest("img", digest);
      expect(registry.tokenRequests.map((q) => q.get("scope"))).toEqual(["repository:x:pull", "repository:img:pull"]);
      expect(registry.tokenRequests[1]!.get("service")).toBe("fake");
      registry.tokens.clear();
      expect((await client.getManifest("img", "v1")).digest).toBe(sha256Digest(first.bytes));
      expect(registry.tokenRequests).toHaveLength(3);
    } finally {
      client.close();
      await registry.stop();
    }
  });
});
