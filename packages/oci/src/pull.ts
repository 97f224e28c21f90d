// pull(): reference → manifest (platform from the index) → config → layers, into the store.
import { formatPlatform, parseImageConfig, parseManifest, parsePlatform, selectPlatform, type ImageManifest, type Platform } from "./manifest.js";
import { formatReference, parseReference } from "./reference.js";
import { RegistryClient, type RegistryOptions } from "./registry.js";
import { ImageStore, type ImageDetails, type StoreOptions } from "./store.js";
import { OciError } from "./errors.js";
import type { Descriptor } from "./digest.js";

/** Progress of a pull, for a CLI's progress bars. */
export type PullEvent =
  | { readonly type: "manifest"; readonly reference: string; readonly digest: string; readonly layers: readonly Descriptor[] }
  | { readonly type: "layer-start"; readonly digest: string; readonly size: number }
  | { readonly type: "layer-progress"; readonly digest: string; readonly bytes: number; readonly size: number }
  | { readonly type: "layer-done"; readonly digest: string; readonly cached: boolean };

/** Options of {@link pull}. */
export interface PullOptions extends RegistryOptions, StoreOptions {
  /** `os/arch[/variant]` or a {@link Platform} (default `linux/amd64`). */
  readonly platform?: string | Platform;
  /** Layers downloaded at once (default 3). */
  readonly concurrency?: number;
  /** Called with progress events. */
  readonly onProgress?: (event: PullEvent) => void;
}

/** Image configs are read into memory: a manifest may not claim a bigger one. */
const MAX_CONFIG = 16 << 20;

async function eachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const item = items[next++]!;
      try {
        await fn(item);
      } catch (error) {
        failed = true;
        throw error;
      }
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  const rejected = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (rejected !== undefined) throw rejected.reason;
}

async function* counting(source: AsyncIterable<Buffer>, desc: Descriptor, onProgress: PullOptions["onProgress"]): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of source) {
    bytes += chunk.length;
    onProgress?.({ type: "layer-progress", digest: desc.digest, bytes, size: desc.size });
    yield chunk;
  }
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
    let index: typeof fetched | undefined;
    if (parsed.kind === "index") {
      index = fetched;
      const entry = selectPlatform(parsed.manifests, wanted, canonical);
      fetched = await client.getManifest(ref.repository, entry.digest, entry);
      parsed = parseManifest(fetched.bytes, entry.mediaType, canonical);
      if (parsed.kind === "index") throw new OciError("ERR_OCI_MANIFEST", canonical, "an index points at another index");
    }
    const manifest: ImageManifest = parsed;
    if (manifest.config.size > MAX_CONFIG) throw new OciError("ERR_OCI_MANIFEST", canonical, `config of ${manifest.config.size} bytes is over the ${MAX_CONFIG}-byte limit`);
    options.onProgress?.({ type: "manifest", reference: canonical, digest: fetched.digest, layers: manifest.layers });
    const digests = [fetched.digest, manifest.config.digest, ...manifest.layers.map((l) => l.digest), ...(index === undefined ? [] : [index.digest])];
    const unpin = await store.pin(digests);
    try {
      if (index !== undefined) await store.writeBlob({ digest: index.digest, size: index.bytes.length }, index.bytes);
      await store.writeBlob({ digest: fetched.digest, size: fetched.bytes.length }, fetched.bytes);
      const configBytes = (await store.hasBlob(manifest.config.digest))
        ? await store.readBlob(manifest.config)
        : await client.getBlob(ref.repository, manifest.config);
      const config = parseImageConfig(configBytes, manifest.config.digest);
      if (config.os !== "" && (config.os !== wanted.os || config.architecture !== wanted.architecture) && index !== undefined) {
        throw new OciError("ERR_OCI_PLATFORM", canonical, `config says ${config.os}/${config.architecture}, index said ${formatPlatform(wanted)}`);
      }
      await store.writeBlob(manifest.config, configBytes);
      await eachLimited(manifest.layers, options.concurrency ?? 3, async (layer) => {
        options.onProgress?.({ type: "layer-start", digest: layer.digest, size: layer.size });
        let cached = true;
        await store.ensureLayer(layer, () => {
          cached = false;
          return counting(client.blobChunks(ref.repository, layer), layer, options.onProgress);
        });
        options.onProgress?.({ type: "layer-done", digest: layer.digest, cached });
      });
      await store.putImage({
        reference: canonical,
        digest: fetched.digest,
        indexDigest: index?.digest,
        mediaType: manifest.mediaType,
        platform: formatPlatform(config.os === "" ? wanted : { os: config.os, architecture: config.architecture, variant: config.variant }),
        config: manifest.config,
        layers: manifest.layers,
        pulledAt: new Date().toISOString(),
      });
    } finally {
      await unpin();
    }
    return await store.inspectImage(canonical);
  } finally {
    client.close();
  }
}
