// Image references, normalised the way Docker's distribution/reference does.
import { OciError } from "./errors.js";

/** The registry host Docker Hub references are served from. */
export const DOCKER_HUB = "docker.io";

/** A parsed, normalised image reference. */
export interface Reference {
  /** Registry host (with port): `docker.io`, `ghcr.io`, `localhost:5000`. */
  readonly registry: string;
  /** Repository path: `library/busybox`, `user/img`. */
  readonly repository: string;
  /** The tag; `latest` when neither tag nor digest was given; undefined for a digest-only reference. */
  readonly tag: string | undefined;
  /** `sha256:<64 hex>` when the reference pins a digest. */
  readonly digest: string | undefined;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const MAX_NAME = 255;

function fail(input: string, why: string): never {
  throw new OciError("ERR_OCI_REFERENCE", input, `invalid image reference: ${why}`);
}

function isDomain(part: string): boolean {
  // Docker's rule: the first component is a registry when it has a '.' or a ':' or is "localhost"
  // (or has an upper-case letter, which a repository never has).
  return part.includes(".") || part.includes(":") || part === "localhost" || part !== part.toLowerCase();
}

function checkDomain(input: string, domain: string): void {
  let host = domain;
  const colon = domain.lastIndexOf(":");
  if (colon >= 0 && !domain.endsWith("]")) {
    const port = domain.slice(colon + 1);
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) fail(input, `bad port in registry "${domain}"`);
    host = domain.slice(0, colon);
  }
  if (/^\[[0-9a-fA-F:]+\]$/.test(host)) return;
  if (host.length === 0 || !host.split(".").every((label) => DOMAIN_LABEL.test(label))) fail(input, `bad registry host "${domain}"`);
}

/**
 * Parses and normalises an image reference as Docker does: `busybox` →
 * `docker.io/library/busybox:latest`, `user/img` → `docker.io/user/img:latest`,
 * `host:5000/a/b:tag`, `localhost/x`, `name@sha256:…`, `name:tag@sha256:…`.
 *
 * @throws {@link OciError} `ERR_OCI_REFERENCE` naming the input.
 */
export function parseReference(input: string): Reference {
  if (typeof input !== "string" || input.length === 0) fail(String(input), "empty reference");
  if (input !== input.trim()) fail(input, "surrounding whitespace");
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) fail(input, `bad digest "${digest}" (expected sha256:<64 lowercase hex>)`);
  }
  let tag: string | undefined;
  const slash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > slash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(input, `bad tag "${tag}"`);
  }
  if (rest.length === 0) fail(input, "missing repository name");
  const parts = rest.split("/");
  let registry = DOCKER_HUB;
  if (parts.length > 1 && isDomain(parts[0]!)) {
    registry = parts.shift()!;
    checkDomain(input, registry);
  }
  if (registry === "index.docker.io" || registry === "registry-1.docker.io") registry = DOCKER_HUB;
  for (const part of parts) {
    if (!COMPONENT.test(part)) fail(input, `bad repository component "${part}" (lowercase letters, digits and separators only)`);
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  const repository = parts.join("/");
  if (repository.length > MAX_NAME) fail(input, `repository name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = "latest";
  return { registry, repository, tag, digest };
}

/** The canonical string form: `registry/repository[:tag][@digest]`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag === undefined ? "" : `:${ref.tag}`}${ref.digest === undefined ? "" : `@${ref.digest}`}`;
}
