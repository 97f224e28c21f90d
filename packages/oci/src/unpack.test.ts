import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { decodeOverrideStat, makedev, OVERRIDE_STAT_XATTR } from "@msb/fs";
import { getxattr, listxattr } from "@msb/native";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { sha256Digest, verifyingChunks } from "./digest.js";
import { OciError } from "./errors.js";
import { blocks, buildTar, gnuHeader, gnuLongNamesTar, paxFileTar, paxRecord, zstdCli, type TarEntry } from "./test-tar.js";
import { unpackLayer, type Compression } from "./unpack.js";

const base = mkdtempSync(join(tmpdir(), "msb-oci-unpack-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

let n = 0;
let layer = "";
let sentinel = "";
beforeEach(() => {
  const dir = join(base, String(n++));
  layer = join(dir, "layer");
  sentinel = join(dir, "sentinel");
  mkdirSync(layer, { recursive: true });
  mkdirSync(sentinel);
  writeFileSync(join(sentinel, "secret"), "secret");
});

function once(bytes: Buffer): AsyncIterable<Buffer> {
  // Several chunks, so entries straddle chunk boundaries.
  const chunks: Buffer[] = [];
  for (let off = 0; off < bytes.length; off += 777) chunks.push(bytes.subarray(off, off + 777));
  return Readable.from(chunks) as AsyncIterable<Buffer>;
}

function unpack(tar: Buffer, compression: Compression = "none"): Promise<void> {
  return unpackLayer(once(tar), compression, layer, { name: "test-layer" });
}

function stat(path: string): ReturnType<typeof decodeOverrideStat> {
  return decodeOverrideStat(getxattr(join(layer, path), OVERRIDE_STAT_XATTR));
}

async function expectUnsafe(entries: readonly TarEntry[]): Promise<void> {
  const error = await unpack(await buildTar(entries)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(OciError.is(error), String(error)).toBe(true);
  expect((error as OciError).code).toBe("ERR_OCI_UNSAFE_ENTRY");
  expect(readdirSync(sentinel)).toEqual(["secret"]);
  expect(readFileSync(join(sentinel, "secret"), "utf8")).toBe("secret");
  expect(statSync(join(sentinel, "secret")).nlink).toBe(1);
}

describe("unpackLayer", () => {
  it("unpacks files, directories, links, whiteouts and special files unprivileged", async () => {
    await unpack(
      await buildTar([
        { header: { name: "./", type: "directory", mode: 0o755 } },
        { header: { name: "etc/", type: "directory", mode: 0o755 } },
        { header: { name: "etc/passwd", mode: 0o644, uid: 0, gid: 0 }, data: "root:x:0:0::/root:/bin/sh\n" },
        { header: { name: "home/app/", type: "directory", mode: 0o750, uid: 1000, gid: 1000 } },
        { header: { name: "bin/su", mode: 0o4755 }, data: "#!/bin/sh\n" },
        { header: { name: "bin/sh", type: "symlink", linkname: "/bin/busybox" } },
        { header: { name: "bin/passwd-link", type: "link", linkname: "etc/passwd" } },
        { header: { name: "dev/null", type: "character-device", mode: 0o666, devmajor: 1, devminor: 3 } },
        { header: { name: "dev/sda", type: "block-device", mode: 0o660, gid: 6, devmajor: 8, devminor: 0 } },
        { header: { name: "run/fifo", type: "fifo", mode: 0o600 } },
        { header: { name: "var/.wh.cache" } },
        { header: { name: "opt/.wh..wh..opq" } },
        { header: { name: "etc/passwd", mode: 0o600 }, data: "replaced\n" },
        { header: { name: "secret/", type: "directory", mode: 0o500 } },
      ]),
    );
    expect(readFileSync(join(layer, "etc/passwd"), "utf8")).toBe("replaced\n");
    expect(stat("etc/passwd")).toEqual({ uid: 0, gid: 0, mode: 0o100600, rdev: 0 });
    expect(stat("home/app")).toEqual({ uid: 1000, gid: 1000, mode: 0o40750, rdev: 0 });
    expect(stat("")).toEqual({ uid: 0, gid: 0, mode: 0o40755, rdev: 0 });
    // Implicit parents: root-owned 0755 like tar would make them.
    expect(stat("dev")).toEqual({ uid: 0, gid: 0, mode: 0o40755, rdev: 0 });
    expect(stat("bin/su").mode).toBe(0o104755);
    expect(statSync(join(layer, "bin/su")).mode & 0o7777).toBe(0o755);
    expect(readlinkSync(join(layer, "bin/sh"))).toBe("/bin/busybox");
    expect(statSync(join(layer, "bin/passwd-link")).ino).not.toBe(statSync(join(layer, "etc/passwd")).ino);
    expect(stat("dev/null")).toEqual({ uid: 0, gid: 0, mode: 0o20666, rdev: makedev(1, 3) });
    expect(stat("dev/sda")).toEqual({ uid: 0, gid: 6, mode: 0o60660, rdev: makedev(8, 0) });
    expect(stat("run/fifo").mode).toBe(0o10600);
    for (const special of ["dev/null", "dev/sda", "run/fifo", "var/.wh.cache", "opt/.wh..wh..opq"]) {
      expect(lstatSync(join(layer, special)).isFile(), special).toBe(true);
      expect(lstatSync(join(layer, special)).size).toBe(0);
    }
    expect(statSync(join(layer, "secret")).mode & 0o777).toBe(0o700);
    expect(stat("secret").mode).toBe(0o40500);
  });

  it("gives the layer root tar's defaults when the archive has no ./ entry", async () => {
    await unpack(await buildTar([{ header: { name: "f" }, data: "x" }]));
    expect(stat("")).toEqual({ uid: 0, gid: 0, mode: 0o40755, rdev: 0 });
  });

  it("links hard links to the same inode", async () => {
    await unpack(
      await buildTar([
        { header: { name: "a" }, data: "data" },
        { header: { name: "dir/b", type: "link", linkname: "a" } },
      ]),
    );
    expect(statSync(join(layer, "dir/b")).ino).toBe(statSync(join(layer, "a")).ino);
    expect(statSync(join(layer, "a")).nlink).toBe(2);
  });

  it("handles PAX long names and PAX xattrs by namespace", async () => {
    const long = `${"d".repeat(120)}/${"e".repeat(120)}/${"f".repeat(150)}`;
    await unpack(
      await buildTar([
        { header: { name: long }, data: "long" },
        {
          header: {
            name: "x",
            pax: {
              "SCHILY.xattr.user.comment": "hello",
              "SCHILY.xattr.security.capability": "cap",
              "SCHILY.xattr.trusted.overlay.opaque": "y",
              "SCHILY.xattr.system.posix_acl_access": "acl",
              "SCHILY.xattr.user.msb.override_stat": "forged",
            },
          },
          data: "x",
        },
        { header: { name: "ünïcødé" }, data: "u" },
      ]),
    );
    expect(readFileSync(join(layer, long), "utf8")).toBe("long");
    expect(readFileSync(join(layer, "ünïcødé"), "utf8")).toBe("u");
    const names = listxattr(join(layer, "x")).map((b) => b.toString()).sort();
    expect(names).toEqual(["user.comment", "user.msb.override_stat", "user.msb.security.capability", "user.msb.trusted.overlay.opaque"]);
    expect(getxattr(join(layer, "x"), "user.comment").toString()).toBe("hello");
    expect(stat("x").mode).toBe(0o100644);
  });

  it("keeps binary PAX xattr values byte for byte", async () => {
    // A capability-like value: not UTF-8, with NULs.
    const binary = Buffer.from([0x01, 0x00, 0x00, 0x02, 0xff, 0xfe, 0x80, 0x00, 0xc3]);
    await unpack(
      paxFileTar("bin/ping", "ping", [
        paxRecord("SCHILY.xattr.security.capability", binary),
        paxRecord("SCHILY.xattr.user.raw", Buffer.from([0xe9, 0x0a, 0x3d])),
        paxRecord("SCHILY.xattr.user.text", Buffer.from("plain")),
      ]),
    );
    const file = join(layer, "bin/ping");
    expect(getxattr(file, "user.msb.security.capability")).toEqual(binary);
    expect(getxattr(file, "user.raw")).toEqual(Buffer.from([0xe9, 0x0a, 0x3d]));
    expect(getxattr(file, "user.text").toString()).toBe("plain");
    expect(readFileSync(file, "utf8")).toBe("ping");
  });

  it("handles GNU long names and long link names", async () => {
    const long = `${"g".repeat(150)}/${"h".repeat(150)}`;
    const longLink = `${"k".repeat(130)}`;
    const target = `/${"t".repeat(200)}`;
    await unpack(gnuLongNamesTar(long, "gnu", longLink, target));
    expect(readFileSync(join(layer, long), "utf8")).toBe("gnu");
    expect(readlinkSync(join(layer, longLink))).toBe(target);
  });

  it("keeps names that are not UTF-8 byte for byte", async () => {
    const name = Buffer.from([0x6e, 0xff, 0xfe, 0x2e, 0x74]);
    await unpack(Buffer.concat([gnuHeader(name, "0", 2), blocks(Buffer.from("ok")), Buffer.alloc(1024)]));
    const names = readdirSync(layer, { encoding: "buffer" });
    expect(names.some((n) => n.equals(name))).toBe(true);
  });

  it("unpacks gzip and zstd layers", async () => {
    const tar = await buildTar([{ header: { name: "f" }, data: "z".repeat(100_000) }]);
    await unpack(gzipSync(tar), "gzip");
    expect(readFileSync(join(layer, "f"), "utf8")).toHaveLength(100_000);
    const zstd = zstdCli(tar, "zstd layer");
    if (zstd === undefined) return;
    rmSync(join(layer, "f"));
    await unpack(zstd, "zstd");
    expect(readFileSync(join(layer, "f"), "utf8")).toHaveLength(100_000);
    rmSync(join(layer, "f"));
    await expect(unpack(zstd.subarray(0, zstd.length - 4), "zstd")).rejects.toMatchObject({ code: "ERR_OCI_LAYER" });
    await expect(unpack(Buffer.from("not zstd at all"), "zstd")).rejects.toMatchObject({ code: "ERR_OCI_LAYER" });
  });

  it("fails on a corrupt stream and on a digest mismatch at the end", async () => {
    const tar = await buildTar([{ header: { name: "f" }, data: "data" }]);
    const gz = gzipSync(tar);
    gz.writeUInt8(gz.readUInt8(gz.length - 6) ^ 0xff, gz.length - 6);
    await expect(unpack(gz, "gzip")).rejects.toMatchObject({ code: "ERR_OCI_LAYER" });
    const wrong = { digest: sha256Digest(Buffer.from("other")), size: tar.length };
    await expect(unpackLayer(verifyingChunks(once(tar), wrong), "none", layer)).rejects.toMatchObject({ code: "ERR_OCI_DIGEST" });
  });

  it("refuses ../ names", async () => {
    await expectUnsafe([{ header: { name: "../sentinel/x" }, data: "x" }]);
    await expectUnsafe([{ header: { name: "a/../../sentinel/x" }, data: "x" }]);
  });

  it("refuses ../ and absolute names that come from PAX and GNU long-name headers", async () => {
    for (const tar of [
      paxFileTar("harmless", "x", [paxRecord("path", Buffer.from("../sentinel/pax"))]),
      paxFileTar("harmless", "x", [paxRecord("path", Buffer.from(`${sentinel}/pax`))]),
      gnuLongNamesTar(`a/../../sentinel/${"g".repeat(120)}`, "x", "l", "t"),
    ]) {
      const error = await unpack(tar).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toMatchObject({ code: "ERR_OCI_UNSAFE_ENTRY" });
      rmSync(layer, { recursive: true });
      mkdirSync(layer);
    }
    expect(readdirSync(sentinel)).toEqual(["secret"]);
  });

  it("refuses absolute names", async () => {
    await expectUnsafe([{ header: { name: `${sentinel}/abs` }, data: "x" }]);
    await expectUnsafe([{ header: { name: "/etc/msb-oci-test-must-not-exist" }, data: "x" }]);
    expect(existsSync("/etc/msb-oci-test-must-not-exist")).toBe(false);
  });

  it("refuses writing through a symlink made earlier in the layer", async () => {
    await expectUnsafe([
      { header: { name: "evil", type: "symlink", linkname: "../sentinel" } },
      { header: { name: "evil/x" }, data: "x" },
    ]);
    await expectUnsafe([
      { header: { name: "abs", type: "symlink", linkname: sentinel } },
      { header: { name: "abs/sub/", type: "directory" } },
    ]);
    await expectUnsafe([
      { header: { name: "abs", type: "symlink", linkname: sentinel } },
      { header: { name: "abs/secret", type: "symlink", linkname: "/etc/passwd" } },
    ]);
  });

  it("refuses hard links to outside or through a symlink", async () => {
    await expectUnsafe([{ header: { name: "h", type: "link", linkname: "../sentinel/secret" } }]);
    await expectUnsafe([{ header: { name: "h", type: "link", linkname: `${sentinel}/secret` } }]);
    await expectUnsafe([
      { header: { name: "s", type: "symlink", linkname: sentinel } },
      { header: { name: "h", type: "link", linkname: "s/secret" } },
    ]);
  });

  it("replaces a symlink with a file instead of writing through it", async () => {
    await unpack(
      await buildTar([
        { header: { name: "victim", type: "symlink", linkname: join(sentinel, "secret") } },
        { header: { name: "victim" }, data: "mine" },
      ]),
    );
    expect(readFileSync(join(layer, "victim"), "utf8")).toBe("mine");
    expect(readFileSync(join(sentinel, "secret"), "utf8")).toBe("secret");
  });

  it("writes a file bigger than a writer batch whole, and a tar cut inside a file fails as a tar error", async () => {
    const big = Buffer.alloc(5 << 20, "b");
    const tar = await buildTar([
      { header: { name: "dir/big" }, data: big },
      { header: { name: "after" }, data: "after" },
    ]);
    await unpack(tar);
    expect(readFileSync(join(layer, "dir/big")).equals(big)).toBe(true);
    expect(readFileSync(join(layer, "after"), "utf8")).toBe("after");
    rmSync(layer, { recursive: true });
    mkdirSync(layer);
    const cut = await unpack(tar.subarray(0, 3 << 20)).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(cut).toMatchObject({ code: "ERR_OCI_LAYER", input: "test-layer" });
  });

  it("names the entry a failure in the writer is about", async () => {
    const error = await unpack(
      await buildTar([
        { header: { name: "d", type: "directory" } },
        { header: { name: "d" }, data: "file over a directory" },
      ]),
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ code: "ERR_OCI_LAYER", input: "d" });
    expect(String((error as Error).message)).toContain("replaces a directory");
    const missing = await unpack(await buildTar([{ header: { name: "h", type: "link", linkname: "no/such" } }])).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(missing).toMatchObject({ code: "ERR_OCI_LAYER", input: "h" });
    expect(String((missing as Error).message)).toContain("hard link target is not in the layer");
  });
});
