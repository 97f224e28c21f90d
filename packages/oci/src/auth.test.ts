import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { dockerConfigDir, dockerCredentials, parseChallenges, saveDockerCredentials } from "./auth.js";

describe("parseChallenges", () => {
  it("parses a Bearer challenge with quoted params", () => {
    expect(parseChallenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" } },
    ]);
  });

  it("parses several challenges, tokens, escapes and odd spacing", () => {
    expect(parseChallenges('Basic realm="a \\"quoted\\" realm", charset=UTF-8 ,  Bearer realm="http://x/token" , error="invalid_token"')).toEqual([
      { scheme: "basic", params: { realm: 'a "quoted" realm', charset: "UTF-8" } },
      { scheme: "bearer", params: { realm: "http://x/token", error: "invalid_token" } },
    ]);
  });

  it("keeps a comma inside quotes and lower-cases names", () => {
    expect(parseChallenges('Bearer Realm="r", Scope="repository:a:pull,push"')).toEqual([{ scheme: "bearer", params: { realm: "r", scope: "repository:a:pull,push" } }]);
  });

  it("returns nothing for an empty header", () => {
    expect(parseChallenges("")).toEqual([]);
  });
});

describe("dockerCredentials", () => {
  const dir = mkdtempSync(join(tmpdir(), "msb-oci-auth-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads base64 auth and username/password, by host and URL keys", () => {
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        auths: {
          "reg.example:5443": { auth: Buffer.from("alice:pa:ss").toString("base64") },
          "https://index.docker.io/v1/": { username: "bob", password: "pw" },
          "empty.example": {},
        },
      }),
    );
    expect(dockerCredentials("reg.example:5443", dir)).toEqual({ username: "alice", password: "pa:ss" });
    expect(dockerCredentials("docker.io", dir)).toEqual({ username: "bob", password: "pw" });
    expect(dockerCredentials("empty.example", dir)).toBeUndefined();
    expect(dockerCredentials("other.example", dir)).toBeUndefined();
  });

  it("tolerates a missing or broken file and honours DOCKER_CONFIG", () => {
    expect(dockerCredentials("x", join(dir, "nope"))).toBeUndefined();
    expect(dockerConfigDir({ DOCKER_CONFIG: dir })).toBe(dir);
    expect(dockerConfigDir({})).toMatch(/\.docker$/);
  });
});

describe("saveDockerCredentials", () => {
  const dir = mkdtempSync(join(tmpdir(), "msb-oci-login-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("writes auths Docker reads back, keeping other keys and replacing other spellings of the registry", async () => {
    const configDir = join(dir, "fresh", ".docker");
    const path = await saveDockerCredentials("reg.example:5443", { username: "alice", password: "pa:ss" }, configDir);
    expect(path).toBe(join(configDir, "config.json"));
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(dockerCredentials("reg.example:5443", configDir)).toEqual({ username: "alice", password: "pa:ss" });

    writeFileSync(path, JSON.stringify({ auths: { "https://index.docker.io/v1/": { auth: "b2xkOm9sZA==" }, "other.example": { auth: "eDp5" } }, credsStore: "desktop" }));
    await saveDockerCredentials("docker.io", { username: "bob", password: "new" }, configDir);
    const config = JSON.parse(readFileSync(path, "utf8")) as { auths: Record<string, unknown>; credsStore: string };
    expect(config.credsStore).toBe("desktop");
    expect(Object.keys(config.auths).sort()).toEqual(["https://index.docker.io/v1/", "other.example"]);
    expect(dockerCredentials("docker.io", configDir)).toEqual({ username: "bob", password: "new" });
    expect(readdirSync(configDir)).toEqual(["config.json"]);
  });

  it("refuses a file that is not a JSON object, and a user name with ':', changing nothing", async () => {
    const configDir = join(dir, "broken");
    mkdirSync(configDir);
    writeFileSync(join(configDir, "config.json"), "[1, 2]");
    await expect(saveDockerCredentials("r.example", { username: "u", password: "p" }, configDir)).rejects.toMatchObject({ code: "ERR_OCI_DOCKER_CONFIG", input: join(configDir, "config.json") });
    await expect(saveDockerCredentials("r.example", { username: "a:b", password: "p" }, configDir)).rejects.toMatchObject({ code: "ERR_OCI_DOCKER_CONFIG" });
    expect(readFileSync(join(configDir, "config.json"), "utf8")).toBe("[1, 2]");
    expect(readdirSync(configDir)).toEqual(["config.json"]);
  });
});
