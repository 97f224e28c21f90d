// A Distribution-spec registry client on node:http/node:https: auth, retries, redirects, resume.
import { readFileSync } from "node:fs";
import http, { type IncomingMessage, type OutgoingHttpHeaders } from "node:http";
import https from "node:https";
import { rootCertificates } from "node:tls";
import { setTimeout as sleep } from "node:timers/promises";
import { parseChallenges, dockerConfigDir, dockerCredentials, type Challenge, type Credentials } from "./auth.js";
import { verifyBytes, verifyingChunks, sha256Digest, type Descriptor } from "./digest.js";
import { OciError } from "./errors.js";

/** Options of a {@link RegistryClient}. */
export interface RegistryOptions {
  /** Registries (host[:port]) allowed over plain HTTP, or `true` for all. Default: none. */
  readonly insecure?: boolean | readonly string[];
  /** Extra CA certificates (PEM) trusted for HTTPS, e.g. a private registry's CA. */
  readonly ca?: string | Buffer;
  /** A PEM file read into {@link RegistryOptions.ca}. */
  readonly caFile?: string;
  /** Credentials to use; default: Docker's `config.json` (honours `DOCKER_CONFIG`). */
  readonly credentials?: Credentials | ((registry: string) => Credentials | undefined);
  /** Directory holding Docker's `config.json` (default `$DOCKER_CONFIG` or `~/.docker`). */
  readonly dockerConfig?: string;
  /** Retries after a 429, a 5xx or a dropped connection (default 4). */
  readonly retries?: number;
  /** First backoff delay in ms, doubled on each retry (default 200, capped at 5 s). */
  readonly retryDelayMs?: number;
}

/** The manifest bytes as the registry sent them, verified against their digest. */
export interface FetchedManifest {
  readonly mediaType: string;
  readonly digest: string;
  readonly bytes: Buffer;
}

/** Media types the client accepts for manifests: OCI and Docker schema 2, image and index. */
export const MANIFEST_MEDIA_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
] as const;

/** Manifests and indexes are read into memory: none may be bigger. */
export const MAX_MANIFEST = 4 << 20;
const MAX_REDIRECTS = 5;
const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRY_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "EAI_AGAIN", "ECONNABORTED", "UND_ERR_SOCKET", "ERR_OCI_DROPPED"]);
const TLS_MISMATCH = new Set(["EPROTO", "ERR_SSL_WRONG_VERSION_NUMBER", "ERR_SSL_PACKET_LENGTH_TOO_LONG"]);

interface CachedToken {
  readonly token: string;
  readonly expiresAt: number;
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

async function readBody(res: IncomingMessage, limit: number, input: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new OciError("ERR_OCI_HTTP", input, `reply larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function drain(res: IncomingMessage): void {
  res.resume();
}

/** Headers the caller passes to {@link RegistryClient.request}. */
type Headers = Record<string, string>;

/**
 * A client for one registry host. Anonymous, Basic and Bearer auth (tokens
 * cached per scope, refreshed on expiry or a 401), a private CA, plain HTTP
 * only on opt-in, redirects that never carry `Authorization` to another
 * host, bounded retries with exponential backoff, and blob downloads that
 * resume with `Range` after a dropped connection.
 */
export class RegistryClient {
  /** The registry as references name it (`docker.io`, `host:port`). */
  readonly registry: string;
  readonly #host: string;
  readonly #insecure: boolean;
  readonly #agent: http.Agent;
  readonly #options: RegistryOptions;
  readonly #tokens = new Map<string, CachedToken>();
  #credentials: Credentials | undefined | null = null;
  #basic = false;

  constructor(registry: string, options: RegistryOptions = {}) {
    this.registry = registry;
    this.#host = registry === "docker.io" ? "registry-1.docker.io" : registry;
    this.#options = options;
    const insecure = options.insecure ?? false;
    this.#insecure = insecure === true || (Array.isArray(insecure) && (insecure as readonly string[]).includes(registry));
    const ca = options.ca ?? (options.caFile === undefined ? undefined : readFileSync(options.caFile));
    this.#agent = this.#insecure
      ? new http.Agent({ keepAlive: true })
      : // `ca` replaces the default trust store, so keep the public roots beside the private CA.
        new https.Agent({ keepAlive: true, ...(ca === undefined ? {} : { ca: [...rootCertificates, ca] }) });
  }

  /** Base URL of the registry API. */
  get baseUrl(): string {
    return `${this.#insecure ? "http" : "https"}://${this.#host}/v2/`;
  }

  /** Closes idle keep-alive sockets. */
  close(): void {
    this.#agent.destroy();
  }

  #creds(): Credentials | undefined {
    if (this.#credentials === null) {
      const given = this.#options.credentials;
      this.#credentials =
        typeof given === "function" ? given(this.registry) : (given ?? dockerCredentials(this.registry, this.#options.dockerConfig ?? dockerConfigDir()));
    }
    return this.#credentials;
  }

  /** `GET /v2/`: resolves when the registry answers as a Distribution registry (authenticating if asked). */
  async ping(): Promise<void> {
    const res = await this.request("GET", this.baseUrl, {}, "");
    drain(res);
  }

  /**
   * Fetches a manifest by tag or digest and verifies it: against `expected`
   * (digest and size) when given, against a digest reference, and against the
   * `Docker-Content-Digest` header.
   */
  async getManifest(repository: string, reference: string, expected?: Pick<Descriptor, "digest" | "size">): Promise<FetchedManifest> {
    const url = `${this.baseUrl}${repository}/manifests/${reference}`;
    const res = await this.request("GET", url, { accept: MANIFEST_MEDIA_TYPES.join(", ") }, repository);
    const bytes = await readBody(res, MAX_MANIFEST, url);
    const digest = sha256Digest(bytes);
    if (expected !== undefined) verifyBytes(bytes, expected);
    if (reference.startsWith("sha256:") && digest !== reference) {
      throw new OciError("ERR_OCI_DIGEST", reference, `manifest hashes to ${digest}`);
    }
    const header = res.headers["docker-content-digest"];
    if (typeof header === "string" && header.startsWith("sha256:") && header !== digest) {
      throw new OciError("ERR_OCI_DIGEST", url, `manifest hashes to ${digest}, registry says ${header}`);
    }
    const mediaType = (res.headers["content-type"] ?? "").split(";")[0]!.trim();
    return { mediaType, digest, bytes };
  }

  /** A small blob (a config), fully read and verified. */
  async getBlob(repository: string, desc: Pick<Descriptor, "digest" | "size">): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this.blobChunks(repository, desc)) chunks.push(chunk);
    return Buffer.concat(chunks);
  }

  /**
   * Streams a blob, verified on the fly (the generator throws
   * `ERR_OCI_DIGEST` at the end or as soon as it grows past its size). A
   * dropped connection is resumed with `Range: bytes=<received>-`; a server
   * that ignores the range is skipped forward.
   */
  blobChunks(repository: string, desc: Pick<Descriptor, "digest" | "size">): AsyncGenerator<Buffer> {
    return verifyingChunks(this.#resumingChunks(repository, desc), desc);
  }

  async *#resumingChunks(repository: string, desc: Pick<Descriptor, "digest" | "size">): AsyncGenerator<Buffer> {
    const url = `${this.baseUrl}${repository}/blobs/${desc.digest}`;
    let received = 0;
    for (let attempt = 0; ; attempt++) {
      const headers: Headers = received > 0 ? { range: `bytes=${received}-` } : {};
      const res = await this.request("GET", url, headers, repository);
      let skip = received > 0 && res.statusCode === 200 ? received : 0;
      if (received > 0 && res.statusCode === 206 && !String(res.headers["content-range"] ?? "").startsWith(`bytes ${received}-`)) {
        res.destroy();
        throw new OciError("ERR_OCI_HTTP", url, `unexpected Content-Range ${String(res.headers["content-range"])}`);
      }
      try {
        for await (const raw of res as AsyncIterable<Buffer>) {
          let chunk = raw;
          if (skip > 0) {
            const drop = Math.min(skip, chunk.length);
            skip -= drop;
            chunk = chunk.subarray(drop);
            if (chunk.length === 0) continue;
          }
          received += chunk.length;
          yield chunk;
        }
        if (received >= desc.size) return;
        throw Object.assign(new Error(`connection closed after ${received} of ${desc.size} bytes`), { code: "ERR_OCI_DROPPED" });
      } catch (error) {
        if (OciError.is(error) || !RETRY_CODES.has(errorCode(error) ?? "") || attempt >= this.#retries) throw error;
        await this.#backoff(attempt);
      }
    }
  }

  get #retries(): number {
    return this.#options.retries ?? 4;
  }

  async #backoff(attempt: number, retryAfter?: string): Promise<void> {
    const base = this.#options.retryDelayMs ?? 200;
    const hinted = retryAfter !== undefined && /^\d+$/.test(retryAfter) ? Number(retryAfter) * 1000 : 0;
    await sleep(Math.min(5000, Math.max(hinted, base * 2 ** attempt)));
  }

  /**
   * One authenticated request with retries and redirects; resolves with the
   * unread 2xx response. `scope` is the repository (`""` for `/v2/`).
   */
  async request(method: string, url: string, headers: Record<string, string>, repository: string): Promise<IncomingMessage> {
    const scope = repository === "" ? "" : `repository:${repository}:pull`;
    let refreshed = false;
    for (;;) {
      const auth = this.#authorization(scope);
      const res = await this.#withRetries(method, url, auth === undefined ? headers : { ...headers, authorization: auth });
      if (res.statusCode !== 401) return this.#checkStatus(res, url);
      drain(res);
      if (refreshed) throw new OciError("ERR_OCI_UNAUTHORIZED", url, "registry refused the credentials", { status: 401 });
      await this.#answerChallenge(parseChallenges(String(res.headers["www-authenticate"] ?? "")), scope, url);
      refreshed = true;
    }
  }

  #checkStatus(res: IncomingMessage, url: string): IncomingMessage {
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    drain(res);
    if (status === 404) throw new OciError("ERR_OCI_NOT_FOUND", url, "not found", { status });
    if (status === 403) throw new OciError("ERR_OCI_UNAUTHORIZED", url, "access denied", { status });
    throw new OciError("ERR_OCI_HTTP", url, `HTTP ${status}`, { status });
  }

  #authorization(scope: string): string | undefined {
    const token = this.#tokens.get(scope);
    if (token !== undefined && token.expiresAt > Date.now()) return `Bearer ${token.token}`;
    const creds = this.#creds();
    if (this.#basic && creds !== undefined) return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
    return undefined;
  }

  async #answerChallenge(challenges: Challenge[], scope: string, url: string): Promise<void> {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    if (bearer !== undefined) {
      this.#tokens.set(scope, await this.#fetchToken(bearer, scope, url));
      return;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      if (this.#creds() === undefined) throw new OciError("ERR_OCI_UNAUTHORIZED", url, "registry wants Basic credentials and none are configured", { status: 401 });
      this.#basic = true;
      return;
    }
    throw new OciError("ERR_OCI_UNAUTHORIZED", url, "401 without a Basic or Bearer challenge", { status: 401 });
  }

  async #fetchToken(challenge: Challenge, scope: string, url: string): Promise<CachedToken> {
    const realm = challenge.params.realm;
    if (realm === undefined || !/^https?:\/\//.test(realm)) throw new OciError("ERR_OCI_UNAUTHORIZED", url, `Bearer challenge without a usable realm`);
    const tokenUrl = new URL(realm);
    if (tokenUrl.protocol === "http:" && !this.#insecure) {
      throw new OciError("ERR_OCI_INSECURE", realm, "token realm is plain HTTP and this registry is not marked insecure");
    }
    if (challenge.params.service !== undefined) tokenUrl.searchParams.set("service", challenge.params.service);
    const wanted = scope !== "" ? scope : challenge.params.scope;
    if (wanted !== undefined && wanted !== "") tokenUrl.searchParams.set("scope", wanted);
    const creds = this.#creds();
    const headers: Headers = creds === undefined ? {} : { authorization: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}` };
    const res = await this.#withRetries("GET", tokenUrl.toString(), headers);
    if (res.statusCode === 401 || res.statusCode === 403) {
      drain(res);
      throw new OciError("ERR_OCI_UNAUTHORIZED", realm, "token server refused the credentials", { status: res.statusCode });
    }
    const body = await readBody(this.#checkStatus(res, realm), 1 << 20, realm);
    let parsed: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
    } catch (cause) {
      throw new OciError("ERR_OCI_UNAUTHORIZED", realm, "token reply is not JSON", { cause });
    }
    const token = typeof parsed.token === "string" ? parsed.token : parsed.access_token;
    if (typeof token !== "string" || token === "") throw new OciError("ERR_OCI_UNAUTHORIZED", realm, "token reply has no token");
    // The spec's default lifetime is 60 s; refresh a little early.
    const lifetime = typeof parsed.expires_in === "number" && parsed.expires_in > 0 ? parsed.expires_in : 60;
    return { token, expiresAt: Date.now() + Math.max(1, lifetime - 10) * 1000 };
  }

  async #withRetries(method: string, url: string, headers: Headers): Promise<IncomingMessage> {
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.#follow(method, url, headers);
        if (!RETRY_STATUS.has(res.statusCode ?? 0) || attempt >= this.#retries) return res;
        drain(res);
        await this.#backoff(attempt, res.headers["retry-after"]);
      } catch (error) {
        if (OciError.is(error) || !RETRY_CODES.has(errorCode(error) ?? "") || attempt >= this.#retries) {
          if (OciError.is(error)) throw error;
          const code = errorCode(error) ?? "";
          if (TLS_MISMATCH.has(code)) throw new OciError("ERR_OCI_INSECURE", url, "TLS handshake failed; if this registry speaks plain HTTP, list it in `insecure`", { cause: error });
          throw new OciError("ERR_OCI_HTTP", url, `request failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        }
        await this.#backoff(attempt);
      }
    }
  }

  async #follow(method: string, start: string, headers: Headers): Promise<IncomingMessage> {
    let url = new URL(start);
    const origin = url.origin;
    let current = headers;
    for (let hop = 0; ; hop++) {
      const res = await this.#exchange(method, url, current);
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (![301, 302, 303, 307, 308].includes(status) || location === undefined) return res;
      drain(res);
      if (hop >= MAX_REDIRECTS) throw new OciError("ERR_OCI_HTTP", start, `more than ${MAX_REDIRECTS} redirects`);
      url = new URL(location, url);
      if (url.protocol === "http:" && !this.#insecure) throw new OciError("ERR_OCI_INSECURE", url.toString(), "redirect to plain HTTP from a TLS registry");
      if (url.protocol !== "http:" && url.protocol !== "https:") throw new OciError("ERR_OCI_HTTP", url.toString(), "redirect to a non-HTTP URL");
      // A blob CDN must never see the registry's credentials.
      if (url.origin !== origin) {
        const { authorization: _dropped, ...rest } = current;
        current = rest;
      }
    }
  }

  #exchange(method: string, url: URL, headers: Headers): Promise<IncomingMessage> {
    const secure = url.protocol === "https:";
    const sameAgent = secure === !this.#insecure;
    const outgoing: OutgoingHttpHeaders = { "user-agent": "msb-oci/0.1", ...headers };
    return new Promise((resolve, reject) => {
      const req = (secure ? https : http).request(url, { method, headers: outgoing, ...(sameAgent ? { agent: this.#agent } : {}) }, resolve);
      req.on("error", reject);
      req.setTimeout(60_000, () => req.destroy(Object.assign(new Error("request timed out"), { code: "ETIMEDOUT" })));
      req.end();
    });
  }
}
