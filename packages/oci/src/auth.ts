// WWW-Authenticate challenges and Docker's credential file.
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { writeNewFileSynced } from "./durable.js";
import { OciError } from "./errors.js";

/** One challenge of a `WWW-Authenticate` header: a scheme and its parameters (names lower-cased). */
export interface Challenge {
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/** A username and password (or identity token as password) for one registry. */
export interface Credentials {
  readonly username: string;
  readonly password: string;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const SPACES = /[ \t]*/y;

function matchAt(re: RegExp, text: string, pos: number): string | undefined {
  re.lastIndex = pos;
  return re.exec(text)?.[0];
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): several challenges, each
 * `scheme` followed by `name=value` or `name="quoted, \"value\""` pairs.
 * Malformed tails are dropped rather than guessed at.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: { scheme: string; params: Record<string, string> }[] = [];
  let pos = 0;
  const skip = (): void => {
    pos += matchAt(SPACES, header, pos)?.length ?? 0;
  };
  while (pos < header.length) {
    skip();
    if (header[pos] === ",") {
      pos++;
      continue;
    }
    const word = matchAt(TOKEN, header, pos);
    if (word === undefined) break;
    pos += word.length;
    skip();
    if (header[pos] === "=" && out.length > 0) {
      pos++;
      skip();
      let value = "";
      if (header[pos] === '"') {
        pos++;
        while (pos < header.length && header[pos] !== '"') {
          if (header[pos] === "\\") pos++;
          value += header[pos] ?? "";
          pos++;
        }
        pos++;
      } else {
        value = matchAt(TOKEN, header, pos) ?? "";
        pos += value.length;
      }
      out[out.length - 1]!.params[word.toLowerCase()] = value;
    } else {
      out.push({ scheme: word.toLowerCase(), params: {} });
    }
  }
  return out;
}

/** The directory of Docker's `config.json`: `$DOCKER_CONFIG`, else `~/.docker`. */
export function dockerConfigDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.DOCKER_CONFIG !== undefined && env.DOCKER_CONFIG !== "" ? env.DOCKER_CONFIG : join(homedir(), ".docker");
}

interface DockerAuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

function hostOf(key: string): string {
  // Keys are "host", "host:port" or a URL such as "https://index.docker.io/v1/".
  const stripped = key.replace(/^https?:\/\//, "");
  const host = stripped.split("/")[0] ?? stripped;
  return host === "index.docker.io" || host === "registry-1.docker.io" ? "docker.io" : host;
}

/**
 * Credentials for `registry` from Docker's `config.json` `auths` (base64
 * `auth` = `user:password`, or `username`/`password`). Returns undefined when
 * the file, the entry or its secret is missing; credential helpers are not run.
 */
export function dockerCredentials(registry: string, configDir: string = dockerConfigDir()): Credentials | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(join(configDir, "config.json"), "utf8"));
  } catch {
    return undefined;
  }
  const auths = (parsed as { auths?: unknown }).auths;
  if (typeof auths !== "object" || auths === null) return undefined;
  for (const [key, value] of Object.entries(auths as Record<string, DockerAuthEntry>)) {
    if (hostOf(key) !== registry || typeof value !== "object" || value === null) continue;
    if (typeof value.auth === "string" && value.auth !== "") {
      const decoded = Buffer.from(value.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon > 0) return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    }
    if (typeof value.username === "string" && typeof value.password === "string") {
      return { username: value.username, password: value.password };
    }
  }
  return undefined;
}

/** The `auths` key Docker itself writes for Docker Hub. */
const DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/";

function configError(path: string, message: string, cause?: unknown): OciError {
  return new OciError("ERR_OCI_DOCKER_CONFIG", path, message, cause === undefined ? undefined : { cause });
}

function plainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Records `credentials` for `registry` in Docker's `config.json` `auths`, as
 * `docker login` does (base64 `user:password` in `auth`), so every OCI tool
 * finds them. Other keys and registries are kept; other spellings of the
 * same registry are replaced by this entry (Docker Hub is written under
 * Docker's own key). The file is replaced atomically, mode 0600.
 *
 * @returns the path of the file written.
 * @throws {@link OciError} `ERR_OCI_DOCKER_CONFIG` when the existing file is
 *   not a JSON object (it is then left as it is), the user name holds a `:`,
 *   or the file cannot be written.
 */
export async function saveDockerCredentials(registry: string, credentials: Credentials, configDir: string = dockerConfigDir()): Promise<string> {
  const path = join(configDir, "config.json");
  if (credentials.username === "" || credentials.username.includes(":")) {
    throw configError(path, `user name ${JSON.stringify(credentials.username)} cannot be stored: it must be non-empty and without ':'`);
  }
  let config: Record<string, unknown> = {};
  let text: string | undefined;
  try {
    text = await readFile(path, "utf8");
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== "ENOENT") throw configError(path, "cannot read Docker's config.json", cause);
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (cause) {
      throw configError(path, "Docker's config.json is not JSON", cause);
    }
    if (!plainObject(parsed)) throw configError(path, "Docker's config.json is not a JSON object");
    config = parsed;
  }
  const auths = config.auths ?? {};
  if (!plainObject(auths)) throw configError(path, "the auths of Docker's config.json is not an object");
  const kept = Object.fromEntries(Object.entries(auths).filter(([key]) => hostOf(key) !== registry));
  const key = registry === "docker.io" ? DOCKER_HUB_AUTH_KEY : registry;
  const auth = Buffer.from(`${credentials.username}:${credentials.password}`).toString("base64");
  const updated = `${JSON.stringify({ ...config, auths: { ...kept, [key]: { auth } } }, null, "\t")}\n`;
  const temp = join(configDir, `.config.json.${process.pid}.${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(configDir, { recursive: true, mode: 0o700 });
    await writeNewFileSynced(temp, updated, 0o600);
    await rename(temp, path);
  } catch (cause) {
    await rm(temp, { force: true });
    throw configError(path, "cannot write Docker's config.json", cause);
  }
  return path;
}
