// Test helpers: a tiny in-process registry whose misbehaviour each test chooses, and the testbed.
import { execFileSync } from "node:child_process";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Digest } from "./digest.js";

/** A request the fake registry saw. */
export interface SeenRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
}

/** A blob handler: return true when it answered the request itself. */
export type BlobHook = (req: IncomingMessage, res: ServerResponse, body: Buffer, digest: string) => boolean;

/** A loopback HTTP registry serving in-memory manifests and blobs. */
export class FakeRegistry {
  readonly requests: SeenRequest[] = [];
  readonly manifests = new Map<string, { body: Buffer; type: string }>();
  readonly blobs = new Map<string, Buffer>();
  blobHook: BlobHook | undefined;
  /** When set, blob GETs answer 307 to this base URL + the digest. */
  redirectTo: string | undefined;
  /** When set, every /v2/ request needs this Basic user:password. */
  basic: string | undefined;
  /** When true, every /v2/ request needs a Bearer token from this server's /token. */
  bearer = false;
  /** Tokens the server accepts; clear it to revoke them all. */
  readonly tokens = new Set<string>();
  /** Query strings of the token requests seen. */
  readonly tokenRequests: URLSearchParams[] = [];
  readonly #server: Server;

  constructor() {
    this.#server = createServer((req, res) => this.#handle(req, res));
  }

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    return `127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Adds a blob and returns its descriptor. */
  addBlob(body: Buffer, mediaType: string): { mediaType: string; digest: string; size: number } {
    const digest = sha256Digest(body);
    this.blobs.set(digest, body);
    return { mediaType, digest, size: body.length };
  }

  /** Adds a manifest under `repo` by tag (and by digest); returns its digest. */
  addManifest(repo: string, tag: string, manifest: unknown, type: string): string {
    const body = Buffer.from(JSON.stringify(manifest));
    const digest = sha256Digest(body);
    this.manifests.set(`${repo}/${tag}`, { body, type });
    this.manifests.set(`${repo}/${digest}`, { body, type });
    return digest;
  }

  /** Adds a one-platform OCI image of `layers`; returns the manifest digest. */
  addImage(repo: string, tag: string, layers: readonly { body: Buffer; mediaType: string }[], config: object = {}): string {
    const configDesc = this.addBlob(
      Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"], ...config }, rootfs: { type: "layers", diff_ids: [] } })),
      "application/vnd.oci.image.config.v1+json",
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: configDesc,
      layers: layers.map((l) => this.addBlob(l.body, l.mediaType)),
    };
    return this.addManifest(repo, tag, manifest, manifest.mediaType);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers });
    const url = req.url ?? "";
    if (url.startsWith("/token?")) {
      this.tokenRequests.push(new URL(url, "http://x").searchParams);
      const token = `t${this.tokenRequests.length}`;
      this.tokens.add(token);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    if (this.bearer && !this.tokens.has((req.headers.authorization ?? "").replace(/^Bearer /, ""))) {
      const realm = `http://${req.headers.host ?? ""}/token`;
      res.writeHead(401, { "www-authenticate": `Bearer realm="${realm}",service="fake",scope="repository:x:pull"` }).end();
      return;
    }
    if (this.basic !== undefined && req.headers.authorization !== `Basic ${Buffer.from(this.basic).toString("base64")}`) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="fake"' }).end();
      return;
    }
    if (url === "/v2/") {
      res.writeHead(200).end("{}");
      return;
    }
    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(url);
    if (manifest !== null) {
      const found = this.manifests.get(`${manifest[1]}/${manifest[2]}`);
      if (found === undefined) res.writeHead(404).end();
      else res.writeHead(200, { "content-type": found.type, "content-length": found.body.length }).end(found.body);
      return;
    }
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(url);
    const body = blob === null ? undefined : this.blobs.get(blob[2]!);
    if (blob === null || body === undefined) {
      res.writeHead(404).end();
      return;
    }
    if (this.redirectTo !== undefined) {
      res.writeHead(307, { location: `${this.redirectTo}${blob[2]}` }).end();
      return;
    }
    if (this.blobHook?.(req, res, body, blob[2]!) === true) return;
    serveRange(req, res, body);
  }
}

/** Answers with `body`, honouring a `Range: bytes=N-` request with 206. */
export function serveRange(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? "");
  if (range !== null) {
    const start = Number(range[1]);
    res.writeHead(206, { "content-length": body.length - start, "content-range": `bytes ${start}-${body.length - 1}/${body.length}` }).end(body.subarray(start));
    return;
  }
  res.writeHead(200, { "content-length": body.length }).end(body);
}

/** The testbed's addresses, as env.sh sets them. */
export const TESTBED = {
  plain: "127.0.0.1:5000",
  tlsBasic: "127.0.0.1:5443",
  token: "127.0.0.1:5001",
  redirect: "127.0.0.1:5004",
  user: "testuser",
  pass: "testpassword",
  ca: join(process.env.OCITEST ?? "/tmp/msb-oci-testbed", "certs", "ca.crt"),
} as const;

/**
 * Starts the shared OCI testbed (idempotent) from `$TESTBED` (as env.sh
 * names it), else `../shared/testbed/oci` beside the repository. Returns why
 * it could not, or undefined when it runs.
 */
export function startTestbed(): string | undefined {
  const testbed = process.env.TESTBED ?? join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "..", "shared", "testbed", "oci");
  const script = join(testbed, "up.sh");
  try {
    // Test files run in parallel; flock keeps two up.sh runs from racing to start the same servers.
    execFileSync("flock", ["--close", join(tmpdir(), "msb-oci-testbed-up.lock"), "bash", script], { stdio: "pipe", timeout: 180_000 });
    return undefined;
  } catch (error) {
    const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? "";
    return `OCI testbed (${script}) did not start: ${error instanceof Error ? error.message : String(error)} ${stderr.slice(-500)}`;
  }
}
