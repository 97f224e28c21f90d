// pull(): reference → manifest (platform from the index) → config → layers, into the store.
import { ingestImage, type IngestOptions, type ManifestBytes } from "./ingest.js";
import { parseManifest, parsePlatform, selectPlatform, type ImageManifest, type Platform } from "./manifest.js";
import { formatReference, parseReference } from "./reference.js";
import { RegistryClient, type RegistryOptions } from "./registry.js";
import { ImageStore, type ImageDetails, type StoreOptions } from "./store.js";
import { OciError } from "./errors.js";

export type { PullEvent } from "./ingest.js";

/** Options of {@link pull}. */
export interface PullOptions extends RegistryOptions, StoreOptions, IngestOptions {
  /** `os/arch[/variant]` or a {@link Platform} (default `linux/amd64`). */
  readonly platform?: string | Platform;
}

/**
 * Pulls an image into the store under `MSB_HOME`: resolves the reference,
 * picks the platform's manifest from an index, verifies every manifest and
 * blob against its digest and size, and unpacks each layer once (download,
 * verify, decompress and untar in one streaming pass). Concurrent pulls in
 * several processes share the work through per-layer locks.
 *
 * @returns the stored image with its typed config and layer directories.
 * @throws {@link OciError} with a stable code; nothing of a failed blob is left in the store.
 */
export async function pull(reference: string, options: PullOptions = {}): Promise<ImageDetails> {
  const ref = parseReference(reference);
  const canonical = formatReference(ref);
  const wanted = typeof options.platform === "string" ? parsePlatform(options.platform) : (options.platform ?? { os: "linux", architecture: "amd64" });
  const store = new ImageStore(options);
  const client = new RegistryClient(ref.registry, options);
  try {
    let fetched = await client.getManifest(ref.repository, ref.digest ?? ref.tag ?? "latest");
    let parsed = parseManifest(fetched.bytes, fetched.mediaType, canonical);
    let index: ManifestBytes | undefined;
    if (parsed.kind === "index") {
      index = fetched;
      const entry = selectPlatform(parsed.manifests, wanted, canonical);
      fetched = await client.getManifest(ref.repository, entry.digest, entry);
      parsed = parseManifest(fetched.bytes, entry.mediaType, canonical);
      if (parsed.kind === "index") throw new OciError("ERR_OCI_MANIFEST", canonical, "an index points at another index");
    }
    const manifest: ImageManifest = parsed;
    return await ingestImage(
      store,
      { reference: canonical, manifest: { digest: fetched.digest, bytes: fetched.bytes, parsed: manifest }, index, platform: wanted },
      { blob: (desc) => client.getBlob(ref.repository, desc), blobChunks: (desc) => client.blobChunks(ref.repository, desc) },
      options,
    );
  } finally {
    client.close();
  }
}
