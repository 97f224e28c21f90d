// importOciLayout(): an OCI image layout directory (oci-layout, index.json,
// blobs/sha256/…) into the store, exactly as a pull would store the image.
import type { FileHandle } from "node:fs/promises";
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { digestHex, sha256Digest, verifyBytes, verifyingChunks, type Descriptor } from "./digest.js";
import { OciError } from "./errors.js";
import { MAX_CONFIG, ingestImage, type IngestOptions, type ManifestBytes } from "./ingest.js";
import { parseManifest, parsePlatform, selectPlatform, type ImageManifest, type IndexEntry, type Platform } from "./manifest.js";
import { formatReference, parseReference } from "./reference.js";
import { MAX_MANIFEST } from "./registry.js";
import type { ImageDetails, ImageStore } from "./store.js";

/** Options of {@link importOciLayout}. */
export interface ImportLayoutOptions extends IngestOptions {
  /** `os/arch[/variant]` or a {@link Platform} chosen from an index (default `linux/amd64`). */
  readonly platform?: string | Platform;
}

/** The annotation an image layout names its images by (the tag, usually). */
const REF_NAME = "org.opencontainers.image.ref.name";

/**
 * Opens a regular file of the layout, with its size. O_NONBLOCK keeps a FIFO
 * planted in a layout from hanging the open; a missing file is
 * `ERR_OCI_NOT_FOUND` naming `input`.
 */
async function openLayoutFile(path: string, input: string, what: string): Promise<{ handle: FileHandle; size: number }> {
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === "ENOENT") throw new OciError("ERR_OCI_NOT_FOUND", input, `${what} is not in the image layout`, { cause });
    throw new OciError("ERR_OCI_LAYER", input, `cannot open ${what} of the image layout`, { cause });
  }
  const stats = await handle.stat().catch(async (cause: unknown) => {
    await handle.close();
    throw cause;
  });
  if (!stats.isFile()) {
    await handle.close();
    throw new OciError("ERR_OCI_LAYER", input, `${what} of the image layout is not a regular file`);
  }
  return { handle, size: stats.size };
}

/** A whole file of the layout, its size checked by `checkSize` before anything is read. */
async function readLayoutFile(path: string, input: string, what: string, checkSize: (size: number) => void): Promise<Buffer> {
  const { handle, size } = await openLayoutFile(path, input, what);
  try {
    checkSize(size);
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** A layout document (`oci-layout`, `index.json`) of at most {@link MAX_MANIFEST} bytes. */
function readDocument(layoutDir: string, name: string): Promise<Buffer> {
  const path = join(layoutDir, name);
  return readLayoutFile(path, path, name, (size) => {
    if (size > MAX_MANIFEST) throw new OciError("ERR_OCI_MANIFEST", path, `${name} of ${size} bytes is over the ${MAX_MANIFEST}-byte limit`);
  });
}

/** The blobs of one image layout, each verified against its descriptor. */
class LayoutBlobs {
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
  }

  #path(desc: Pick<Descriptor, "digest">): string {
    return join(this.#dir, "blobs", "sha256", digestHex(desc.digest));
  }

  /** A manifest, index or config blob of at most `limit` bytes, read whole and verified. */
  async read(desc: Descriptor, limit: number): Promise<Buffer> {
    if (desc.size > limit) throw new OciError("ERR_OCI_MANIFEST", desc.digest, `blob of ${desc.size} bytes is over the ${limit}-byte limit`);
    const bytes = await readLayoutFile(this.#path(desc), desc.digest, "blob", (size) => {
      if (size !== desc.size) throw new OciError("ERR_OCI_DIGEST", desc.digest, `size ${size}, descriptor says ${desc.size}`);
    });
    verifyBytes(bytes, desc);
    return bytes;
  }

  /** A layer blob's bytes, verified as they stream. */
  chunks(desc: Descriptor): AsyncGenerator<Buffer> {
    const path = this.#path(desc);
    const raw = async function* (): AsyncGenerator<Buffer> {
      const { handle } = await openLayoutFile(path, desc.digest, "blob");
      try {
        for await (const chunk of handle.createReadStream({ autoClose: false })) yield chunk as Buffer;
      } finally {
        await handle.close();
      }
    };
    return verifyingChunks(raw(), desc);
  }
}

/** The `index.json` entry to import: the one named like the reference's tag if any are named so, else by platform. */
function chooseEntry(indexBytes: Buffer, entries: readonly IndexEntry[], tag: string | undefined, wanted: Platform, input: string): IndexEntry {
  const raw = (JSON.parse(indexBytes.toString("utf8")) as { manifests: { annotations?: Record<string, unknown> }[] }).manifests;
  const named = entries.filter((_, i) => tag !== undefined && raw[i]?.annotations?.[REF_NAME] === tag);
  const candidates = named.length > 0 ? named : entries;
  if (candidates.length === 1) return candidates[0]!;
  return selectPlatform(candidates, wanted, input);
}

/**
 * Imports an image from an OCI image layout directory into `store` under
 * `reference`, storing exactly what {@link pull} would: manifest, config and
 * layer blobs verified against their digests and sizes, each layer unpacked
 * once, pinned against a concurrent prune, then the image record.
 *
 * The image is the `index.json` entry whose `org.opencontainers.image.ref.name`
 * annotation equals the reference's tag, else the only entry, else the one for
 * `platform`; an entry that is itself an index is resolved by `platform`.
 * Importing content the store already has under `reference` changes nothing.
 *
 * @param store - the content store to import into.
 * @param layoutDir - the directory holding `oci-layout`, `index.json` and `blobs/`.
 * @param reference - what to record the image as, e.g. `msb.local/busybox:latest`.
 * @returns the stored image with its typed config and layer directories.
 * @throws {@link OciError} `ERR_OCI_NOT_FOUND` (not a layout, missing blob),
 *   `ERR_OCI_DIGEST` (a blob that differs from its descriptor),
 *   `ERR_OCI_MANIFEST`, `ERR_OCI_PLATFORM`, `ERR_OCI_LAYER`; on failure no
 *   record is written and nothing of a bad layer is left in the store.
 */
export async function importOciLayout(store: ImageStore, layoutDir: string, reference: string, options: ImportLayoutOptions = {}): Promise<ImageDetails> {
  const ref = parseReference(reference);
  const canonical = formatReference(ref);
  const wanted = typeof options.platform === "string" ? parsePlatform(options.platform) : (options.platform ?? { os: "linux", architecture: "amd64" });
  const layoutFile = await readDocument(layoutDir, "oci-layout");
  let layoutVersion: unknown;
  try {
    layoutVersion = (JSON.parse(layoutFile.toString("utf8")) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
  } catch (cause) {
    throw new OciError("ERR_OCI_MANIFEST", layoutDir, "oci-layout is not JSON", { cause });
  }
  if (layoutVersion !== "1.0.0") throw new OciError("ERR_OCI_MANIFEST", layoutDir, `unsupported imageLayoutVersion ${JSON.stringify(layoutVersion)}`);

  const indexInput = join(layoutDir, "index.json");
  const indexBytes = await readDocument(layoutDir, "index.json");
  const top = parseManifest(indexBytes, "application/vnd.oci.image.index.v1+json", indexInput);
  if (top.kind !== "index") throw new OciError("ERR_OCI_MANIFEST", indexInput, "index.json is not an image index");
  const entry = chooseEntry(indexBytes, top.manifests, ref.tag, wanted, indexInput);

  const blobs = new LayoutBlobs(layoutDir);
  let bytes = await blobs.read(entry, MAX_MANIFEST);
  let parsed = parseManifest(bytes, entry.mediaType, entry.digest);
  let index: ManifestBytes | undefined;
  if (parsed.kind === "index") {
    index = { digest: entry.digest, bytes };
    const chosen = selectPlatform(parsed.manifests, wanted, entry.digest);
    bytes = await blobs.read(chosen, MAX_MANIFEST);
    parsed = parseManifest(bytes, chosen.mediaType, chosen.digest);
    if (parsed.kind === "index") throw new OciError("ERR_OCI_MANIFEST", chosen.digest, "an index points at another index");
  }
  const manifest: ImageManifest = parsed;
  const digest = sha256Digest(bytes);

  const existing = await store.getImage(canonical);
  if (existing?.digest === digest && existing.indexDigest === index?.digest) {
    // Same content already recorded: keep the record (and its time) as it is, once its layers are all there.
    const details = await store.inspectImage(canonical);
    if ((await Promise.all(details.layers.map((layer) => store.hasLayer(layer.digest)))).every(Boolean)) return details;
  }
  return ingestImage(
    store,
    { reference: canonical, manifest: { digest, bytes, parsed: manifest }, index, platform: wanted },
    { blob: (desc) => blobs.read(desc, MAX_CONFIG), blobChunks: (desc) => blobs.chunks(desc) },
    options,
  );
}
