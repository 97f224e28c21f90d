import { describe, expect, it } from "vitest";
import { OciError } from "./errors.js";
import { formatReference, parseReference } from "./reference.js";

const D = `sha256:${"a".repeat(64)}`;

describe("parseReference", () => {
  it.each([
    ["busybox", "docker.io", "library/busybox", "latest", undefined],
    ["busybox:1.36", "docker.io", "library/busybox", "1.36", undefined],
    ["user/img", "docker.io", "user/img", "latest", undefined],
    ["docker.io/busybox", "docker.io", "library/busybox", "latest", undefined],
    ["index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", undefined],
    ["registry-1.docker.io/user/img:v1", "docker.io", "user/img", "v1", undefined],
    ["host:5000/a/b:tag", "host:5000", "a/b", "tag", undefined],
    ["127.0.0.1:5000/busybox", "127.0.0.1:5000", "busybox", "latest", undefined],
    ["localhost/x", "localhost", "x", "latest", undefined],
    ["localhost:5000/x:y", "localhost:5000", "x", "y", undefined],
    ["ghcr.io/owner/repo/sub:1.0", "ghcr.io", "owner/repo/sub", "1.0", undefined],
    [`busybox@${D}`, "docker.io", "library/busybox", undefined, D],
    [`busybox:1.36@${D}`, "docker.io", "library/busybox", "1.36", D],
    [`host:5000/a@${D}`, "host:5000", "a", undefined, D],
    ["a/b-c_d.e__f:T_a.g-1", "docker.io", "a/b-c_d.e__f", "T_a.g-1", undefined],
    ["[::1]:5000/img", "[::1]:5000", "img", "latest", undefined],
  ])("%s", (input, registry, repository, tag, digest) => {
    expect(parseReference(input)).toEqual({ registry, repository, tag, digest });
  });

  it.each([
    ["", "empty"],
    [" busybox", "whitespace"],
    ["Busybox", "upper case repository"],
    ["busybox:", "empty tag"],
    ["busybox:-tag", "tag starting with -"],
    [`busybox:${"t".repeat(129)}`, "tag too long"],
    ["busybox@sha256:abc", "short digest"],
    [`busybox@md5:${"a".repeat(32)}`, "unknown algorithm"],
    [`busybox@sha256:${"A".repeat(64)}`, "upper-case digest"],
    ["a//b", "empty component"],
    ["a/b/", "trailing slash"],
    ["/a", "leading slash"],
    ["a/-b", "component starting with -"],
    ["a/b..c", "double dot"],
    ["host:99999/a", "bad port"],
    ["host:port/a", "non-numeric port"],
    ["-host.io/a", "bad host label"],
    [":tag", "no name"],
    [`@${D}`, "digest without name"],
    [`${"a".repeat(256)}/b`, "too long"],
  ])("rejects %j (%s)", (input) => {
    let error: unknown;
    try {
      parseReference(input);
    } catch (e) {
      error = e;
    }
    expect(OciError.is(error)).toBe(true);
    expect((error as OciError).code).toBe("ERR_OCI_REFERENCE");
    expect((error as OciError).input).toBe(input);
    expect((error as OciError).message).toContain(input === "" ? "empty" : input.slice(0, 20));
  });

  it("formats canonically", () => {
    expect(formatReference(parseReference("busybox"))).toBe("docker.io/library/busybox:latest");
    expect(formatReference(parseReference(`x:1@${D}`))).toBe(`docker.io/library/x:1@${D}`);
    expect(formatReference(parseReference(`localhost:5000/x@${D}`))).toBe(`localhost:5000/x@${D}`);
  });
});
