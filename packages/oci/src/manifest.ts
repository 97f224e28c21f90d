// OCI / Docker schema 2 manifests, indexes, platform selection and image configs.
import { digestHex, type Descriptor } from "./digest.js";
import { OciError } from "./errors.js";

/** `os/arch[/variant]`, e.g. `linux/amd64`, `linux/arm64/v8`. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

/** An image manifest: its config and its layers, bottom first. */
export interface ImageManifest {
  readonly mediaType: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
}

/** An index / manifest list entry. */
export interface IndexEntry extends Descriptor {
  readonly platform?: Platform | undefined;
}

const INDEX_TYPES = new Set(["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"]);
const MANIFEST_TYPES = new Set(["application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"]);

/** Layer media types this package unpacks, by compression. */
export const LAYER_MEDIA_TYPES: Readonly<Record<string, "gzip" | "zstd" | "none">> = {
  "application/vnd.oci.image.layer.v1.tar": "none",
  "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
  "application/vnd.oci.image.layer.v1.tar+zstd": "zstd",
  "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
  "application/vnd.docker.image.rootfs.diff.tar": "none",
};

type Json = Record<string, unknown>;

function object(value: unknown, input: string, what: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new OciError("ERR_OCI_MANIFEST", input, `${what} is not an object`);
  return value as Json;
}

function descriptor(value: unknown, input: string, what: string): Descriptor {
  const json = object(value, input, what);
  const { mediaType, digest, size } = json;
  if (typeof mediaType !== "string" || typeof digest !== "string" || typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
    throw new OciError("ERR_OCI_MANIFEST", input, `${what} is not a valid descriptor`);
  }
  try {
    digestHex(digest);
  } catch (cause) {
    throw new OciError("ERR_OCI_MANIFEST", input, `${what} has an unsupported digest ${digest}`, { cause });
  }
  return { mediaType, digest, size };
}

function parseJson(bytes: Uint8Array, input: string): Json {
  try {
    return object(JSON.parse(Buffer.from(bytes).toString("utf8")), input, "manifest");
  } catch (cause) {
    if (OciError.is(cause)) throw cause;
    throw new OciError("ERR_OCI_MANIFEST", input, "manifest is not JSON", { cause });
  }
}

/** What a manifest document is: an index to pick a platform from, or an image manifest. */
export type ParsedManifest = { readonly kind: "index"; readonly manifests: readonly IndexEntry[] } | ({ readonly kind: "manifest" } & ImageManifest);

/**
 * Parses an OCI index / image manifest or a Docker schema 2 list / manifest.
 * The document's own `mediaType` wins over the HTTP `Content-Type`.
 *
 * @throws {@link OciError} `ERR_OCI_MANIFEST` for anything else (schema 1 included).
 */
export function parseManifest(bytes: Uint8Array, contentType: string, input: string): ParsedManifest {
  const json = parseJson(bytes, input);
  if (json.schemaVersion !== 2) throw new OciError("ERR_OCI_MANIFEST", input, `schemaVersion ${String(json.schemaVersion)} is not supported`);
  const mediaType = typeof json.mediaType === "string" ? json.mediaType : contentType !== "" ? contentType : Array.isArray(json.manifests) ? [...INDEX_TYPES][0]! : [...MANIFEST_TYPES][0]!;
  if (INDEX_TYPES.has(mediaType) || (mediaType === "application/json" && Array.isArray(json.manifests))) {
    if (!Array.isArray(json.manifests)) throw new OciError("ERR_OCI_MANIFEST", input, "index without manifests");
    const manifests = json.manifests.map((entry: unknown, i): IndexEntry => {
      const desc = descriptor(entry, input, `manifests[${i}]`);
      const platform = (entry as Json).platform;
      if (platform === undefined) return desc;
      const p = object(platform, input, `manifests[${i}].platform`);
      if (typeof p.os !== "string" || typeof p.architecture !== "string") throw new OciError("ERR_OCI_MANIFEST", input, `manifests[${i}].platform lacks os/architecture`);
      return { ...desc, platform: { os: p.os, architecture: p.architecture, variant: typeof p.variant === "string" ? p.variant : undefined } };
    });
    return { kind: "index", manifests };
  }
  if (!MANIFEST_TYPES.has(mediaType) && mediaType !== "application/json") {
    throw new OciError("ERR_OCI_MANIFEST", input, `unsupported manifest media type ${mediaType}`);
  }
  if (!Array.isArray(json.layers)) throw new OciError("ERR_OCI_MANIFEST", input, "manifest without layers");
  const layers = json.layers.map((layer: unknown, i) => descriptor(layer, input, `layers[${i}]`));
  for (const layer of layers) {
    if (LAYER_MEDIA_TYPES[layer.mediaType] === undefined) throw new OciError("ERR_OCI_MANIFEST", input, `unsupported layer media type ${layer.mediaType}`);
  }
  return { kind: "manifest", mediaType, config: descriptor(json.config, input, "config"), layers };
}

/** Parses `os/arch[/variant]`. @throws {@link OciError} `ERR_OCI_PLATFORM`. */
export function parsePlatform(text: string): Platform {
  const parts = text.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new OciError("ERR_OCI_PLATFORM", text, "platform must be os/arch[/variant]");
  }
  return { os: parts[0]!, architecture: parts[1]!, variant: parts[2] };
}

/** `os/arch[/variant]`. */
export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant === undefined ? "" : `/${p.variant}`}`;
}

function normalVariant(p: Platform): string | undefined {
  // arm64 without a variant means v8, as containerd's platform matcher says.
  if (p.architecture === "arm64" && p.variant === undefined) return "v8";
  return p.variant;
}

/**
 * The index entry for `wanted`: same os and architecture, and the same
 * variant when one is asked for (arm64 implies v8). Without a wanted variant
 * the first matching entry wins.
 *
 * @throws {@link OciError} `ERR_OCI_PLATFORM` listing what the index has.
 */
export function selectPlatform(entries: readonly IndexEntry[], wanted: Platform, input: string): IndexEntry {
  const match = entries.find((e) => {
    const p = e.platform;
    if (p === undefined || p.os !== wanted.os || p.architecture !== wanted.architecture) return false;
    return wanted.variant === undefined || normalVariant(p) === normalVariant(wanted);
  });
  if (match !== undefined) return match;
  const have = entries.map((e) => (e.platform === undefined ? "?" : formatPlatform(e.platform))).join(", ");
  throw new OciError("ERR_OCI_PLATFORM", input, `no manifest for ${formatPlatform(wanted)} (index has: ${have || "nothing"})`);
}

/** The run-time settings of an image, from its config blob. */
export interface ImageConfig {
  readonly architecture: string;
  readonly os: string;
  readonly variant: string | undefined;
  readonly env: readonly string[];
  readonly cmd: readonly string[] | undefined;
  readonly entrypoint: readonly string[] | undefined;
  readonly workingDir: string | undefined;
  readonly user: string | undefined;
  /** `"80/tcp"`-style keys of `ExposedPorts`. */
  readonly exposedPorts: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** The layers' uncompressed digests (`rootfs.diff_ids`). */
  readonly diffIds: readonly string[];
  /** When the image was built (the config's `created`), as an ISO 8601 UTC time; undefined when absent or not a date. */
  readonly created: string | undefined;
}

function strings(value: unknown, input: string, what: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === "string")) throw new OciError("ERR_OCI_MANIFEST", input, `config ${what} is not a list of strings`);
  return value;
}

function optionalString(value: unknown, input: string, what: string): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new OciError("ERR_OCI_MANIFEST", input, `config ${what} is not a string`);
  return value;
}

/** The config's `created` as an ISO time: a non-string is malformed, a string that is no date is ignored. */
function createdTime(value: unknown, input: string): string | undefined {
  const text = optionalString(value, input, "created");
  const time = text === undefined ? Number.NaN : Date.parse(text);
  return Number.isNaN(time) ? undefined : new Date(time).toISOString();
}

/** Parses an image config blob. @throws {@link OciError} `ERR_OCI_MANIFEST`. */
export function parseImageConfig(bytes: Uint8Array, input: string): ImageConfig {
  const json = parseJson(bytes, input);
  const config = json.config === undefined || json.config === null ? {} : object(json.config, input, "config.config");
  const rootfs = json.rootfs === undefined ? {} : object(json.rootfs, input, "rootfs");
  const labels: Record<string, string> = {};
  if (config.Labels !== undefined && config.Labels !== null) {
    for (const [k, v] of Object.entries(object(config.Labels, input, "Labels"))) if (typeof v === "string") labels[k] = v;
  }
  return {
    architecture: optionalString(json.architecture, input, "architecture") ?? "",
    os: optionalString(json.os, input, "os") ?? "",
    variant: optionalString(json.variant, input, "variant"),
    env: strings(config.Env, input, "Env") ?? [],
    cmd: strings(config.Cmd, input, "Cmd"),
    entrypoint: strings(config.Entrypoint, input, "Entrypoint"),
    workingDir: optionalString(config.WorkingDir, input, "WorkingDir"),
    user: optionalString(config.User, input, "User"),
    exposedPorts: config.ExposedPorts === undefined || config.ExposedPorts === null ? [] : Object.keys(object(config.ExposedPorts, input, "ExposedPorts")),
    labels,
    diffIds: strings(rootfs.diff_ids, input, "rootfs.diff_ids") ?? [],
    created: createdTime(json.created, input),
  };
}
