import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PathFs } from "@msb/fs";
import { DualFs } from "@msb/fs-dual";
import { MemFs } from "@msb/fs-memfs";
import { OverlayFs } from "@msb/fs-overlay";
import { PassthroughFs } from "@msb/fs-passthrough";
import { afterAll, describe, expect, it } from "vitest";
import { SpecError, fsFromSpec, fsFromSpecFile, parseSpec } from "./index.js";

const dir = mkdtempSync(join(tmpdir(), "msb-spec-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function specErrorAsync(run: () => Promise<unknown>): Promise<SpecError> {
  try {
    await run();
  } catch (error) {
    if (SpecError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a SpecError");
}

function specError(run: () => unknown): SpecError {
  try {
    run();
  } catch (error) {
    if (SpecError.isInstance(error)) return error;
    throw error;
  }
  throw new Error("expected a SpecError");
}

describe("parseSpec", () => {
  it("normalises sizes and keeps what was given", () => {
    expect(parseSpec({ type: "memfs", capacity: "64MiB", maxInodes: 10000, cache: "never" })).toEqual({
      type: "memfs",
      capacity: 64 * 2 ** 20,
      maxInodes: 10000,
      cache: "never",
    });
    expect(parseSpec({ type: "passthrough", rootDir: "/srv", quota: "1GiB", readOnly: true })).toMatchObject({
      type: "passthrough",
      rootDir: "/srv",
      quota: 2 ** 30,
      readOnly: true,
    });
  });

  it.each<[unknown, string, RegExp]>([
    [null, "$", /expected an object/],
    [[], "$", /expected an object/],
    [{}, "$.type", /expected one of "memfs", "passthrough", "overlay", "dual", "image", got nothing/],
    [{ type: "zfs" }, "$.type", /got "zfs"/],
    [{ type: "toString" }, "$.type", /got "toString"/],
    [{ type: "memfs", capcity: 1 }, "$.capcity", /unknown field \(a memfs spec has type, cache, capacity, maxInodes\)/],
    [{ type: "memfs", capacity: -5 }, "$.capacity", /byte count/],
    [{ type: "memfs", capacity: "12 apples" }, "$.capacity", /"12 apples"/],
    [{ type: "memfs", maxInodes: 0 }, "$.maxInodes", /at least 1/],
    [{ type: "memfs", maxInodes: 1.5 }, "$.maxInodes", /whole number/],
    [{ type: "memfs", cache: "sometimes" }, "$.cache", /"never", "auto" or "always"/],
    [{ type: "passthrough" }, "$.rootDir", /non-empty path, got nothing/],
    [{ type: "passthrough", rootDir: "" }, "$.rootDir", /non-empty path/],
    [{ type: "passthrough", rootDir: "/a\u0000b" }, "$.rootDir", /non-empty path/],
    [{ type: "passthrough", rootDir: "/srv", readOnly: "yes" }, "$.readOnly", /true or false/],
    [{ type: "passthrough", rootDir: "/srv", quota: {} }, "$.quota", /byte count/],
  ])("refuses %j at %s", (value, path, message) => {
    const error = specError(() => parseSpec(value));
    expect(error.path).toBe(path);
    expect(error.code).toBe("ERR_MSB_INVALID_SPEC");
    expect(error.message).toMatch(message);
    expect(error.message.startsWith(`${path}: `)).toBe(true);
  });

  it("checks overlay layers where they sit", () => {
    expect(parseSpec({ type: "overlay", lowers: [{ type: "memfs" }], upper: { type: "memfs", capacity: "1MiB" } })).toEqual({
      type: "overlay",
      cache: undefined,
      lowers: [{ type: "memfs", cache: undefined, capacity: undefined, maxInodes: undefined }],
      upper: { type: "memfs", cache: undefined, capacity: 2 ** 20, maxInodes: undefined },
      staging: undefined,
    });
    const at = (value: unknown) => specError(() => parseSpec(value)).path;
    expect(at({ type: "overlay", upper: { type: "memfs" } })).toBe("$.lowers");
    expect(at({ type: "overlay", lowers: {}, upper: { type: "memfs" } })).toBe("$.lowers");
    expect(at({ type: "overlay", lowers: [{ type: "memfs" }, { type: "memfs", capacity: -1 }], upper: { type: "memfs" } })).toBe("$.lowers[1].capacity");
    expect(at({ type: "overlay", lowers: [], upper: { type: "nope" } })).toBe("$.upper.type");
    expect(at({ type: "overlay", lowers: [], upper: { type: "memfs" }, staging: "" })).toBe("$.staging");
    expect(at({ type: "overlay", lowers: [{ type: "overlay", lowers: [], upper: { type: "memfs", x: 1 } }], upper: { type: "memfs" } })).toBe("$.lowers[0].upper.x");
  });

  it("prefixes paths of nested specs", () => {
    expect(specError(() => parseSpec({ type: "memfs", capacity: "x" }, "$.lowers[2]")).path).toBe("$.lowers[2].capacity");
  });
});

describe("fsFromSpec", () => {
  it("builds a MemFs with its limits", async () => {
    const fs = await fsFromSpec({ type: "memfs", capacity: "1MiB", maxInodes: 3 });
    expect(fs).toBeInstanceOf(MemFs);
    expect(fs.cachePolicy).toBe("always");
    const files = new PathFs(fs);
    await files.writeFile("/a", "x");
    await files.writeFile("/b", "y");
    await expect(files.writeFile("/c", "z")).rejects.toMatchObject({ code: "ENOSPC" });
  });

  it("builds a PassthroughFs over a host directory, honouring readOnly and cache", async () => {
    writeFileSync(join(dir, "hello.txt"), "from the host");
    const fs = await fsFromSpec({ type: "passthrough", rootDir: dir, readOnly: true, cache: "never" });
    expect(fs).toBeInstanceOf(PassthroughFs);
    expect(fs.cachePolicy).toBe("never");
    const files = new PathFs(fs);
    expect(await files.readFile("/hello.txt", "utf8")).toBe("from the host");
    await expect(files.writeFile("/new", "x")).rejects.toMatchObject({ code: "EROFS" });
  });

  it("builds an overlay whose writes land in the upper and leave the lower alone", async () => {
    writeFileSync(join(dir, "base.txt"), "from the lower");
    const fs = await fsFromSpec({ type: "overlay", lowers: [{ type: "passthrough", rootDir: dir, readOnly: true }], upper: { type: "memfs" } });
    expect(fs).toBeInstanceOf(OverlayFs);
    await fs.init();
    const files = new PathFs(fs);
    expect(await files.readFile("/base.txt", "utf8")).toBe("from the lower");
    await files.writeFile("/base.txt", "changed");
    expect(await files.readFile("/base.txt", "utf8")).toBe("changed");
    expect(readFileSync(join(dir, "base.txt"), "utf8")).toBe("from the lower");
    await fs.destroy();
  });

  it("builds a DualFs whose reads fall through to b and whose changes land in a, with its cache policy", async () => {
    writeFileSync(join(dir, "project.txt"), "from b");
    const fs = await fsFromSpec({ type: "dual", a: { type: "memfs" }, b: { type: "passthrough", rootDir: dir, readOnly: true }, cache: "never" });
    expect(fs).toBeInstanceOf(DualFs);
    expect(fs.cachePolicy).toBe("never");
    await fs.init();
    const files = new PathFs(fs);
    expect(await files.readFile("/project.txt", "utf8")).toBe("from b");
    await files.writeFile("/project.txt", "changed in a");
    expect(await files.readFile("/project.txt", "utf8")).toBe("changed in a");
    expect(readFileSync(join(dir, "project.txt"), "utf8")).toBe("from b");
    await fs.destroy();
  });

  it("checks a dual spec's backends and policy where they sit", () => {
    const at = (value: unknown): string => specError(() => parseSpec(value)).path;
    expect(parseSpec({ type: "dual", a: { type: "memfs" }, b: { type: "memfs" }, policy: "BackendAOnly" })).toMatchObject({ type: "dual", policy: "BackendAOnly" });
    expect(at({ type: "dual", b: { type: "memfs" } })).toBe("$.a");
    expect(at({ type: "dual", a: { type: "memfs" }, b: { type: "memfs", capacity: "x" } })).toBe("$.b.capacity");
    expect(specError(() => parseSpec({ type: "dual", a: { type: "memfs" }, b: { type: "memfs" }, policy: "ReadAll" })).message).toMatch(
      /\$\.policy: expected one of "ReadBackendBWriteBackendA", "BackendAOnly"/,
    );
  });

  it("reports a nested backend's refusal at its own path", async () => {
    const error = await specErrorAsync(() => fsFromSpec({ type: "overlay", lowers: [{ type: "passthrough", rootDir: join(dir, "missing") }], upper: { type: "memfs" } }));
    expect(error.path).toBe("$.lowers[0].rootDir");
  });

  it("reports a backend's refusal at the field that caused it, with the cause", async () => {
    const error = await specErrorAsync(() => fsFromSpec({ type: "passthrough", rootDir: join(dir, "missing") }));
    expect(error.path).toBe("$.rootDir");
    expect(error.message).toMatch(/ENOENT/);
    expect(error.cause).toBeDefined();
  });
});

describe("fsFromSpecFile", () => {
  it("reads JSON from a file", async () => {
    const file = join(dir, "ok.json");
    writeFileSync(file, JSON.stringify({ type: "memfs" }));
    expect(await fsFromSpecFile(file)).toBeInstanceOf(MemFs);
  });

  it("names an image that was never pulled at $.ref", async () => {
    const home = join(dir, "empty-home");
    const saved = process.env.MSB_HOME;
    process.env.MSB_HOME = home;
    try {
      const error = await specErrorAsync(() => fsFromSpec({ type: "image", ref: "busybox", upper: { type: "memfs" } }));
      expect(error.path).toBe("$.ref");
      expect(error.message).toMatch(/ERR_OCI_IMAGE_NOT_FOUND/);
    } finally {
      if (saved === undefined) delete process.env.MSB_HOME;
      else process.env.MSB_HOME = saved;
    }
  });

  it("names a missing file and bad JSON at $", async () => {
    await expect(fsFromSpecFile(join(dir, "nope.json"))).rejects.toMatchObject({ path: "$", message: /cannot read spec file/ });
    const bad = join(dir, "bad.json");
    writeFileSync(bad, "{ type: memfs");
    await expect(fsFromSpecFile(bad)).rejects.toMatchObject({ path: "$", message: /is not JSON/ });
  });
});
