// What every way of getting an image does once its manifest is known (pull
// from a registry, import of an OCI image layout): store the manifest, config
// and layers verified, pinned against a concurrent prune, then the record.
import type { Descriptor } from "./digest.js";
import { OciError } from "./errors.js";
import { formatPlatform, parseImageConfig, type ImageManifest, type Platform } from "./manifest.js";
import type { ImageDetails, ImageStore } from "./store.js";

/** Progress of a pull or import, for a CLI's progress bars. */
export type PullEvent =
  | { readonly type: "manifest"; readonly reference: string; readonly digest: string; readonly layers: readonly Descriptor[] }
  | { readonly type: "layer-start"; readonly digest: string; readonly size: number }
  | { readonly type: "layer-progress"; readonly digest: string; readonly bytes: number; readonly size: number }
  | { readonly type: "layer-done"; readonly digest: string; readonly cached: boolean };

/** A manifest or index document with the digest of its exact bytes. */
export interface ManifestBytes {
  readonly digest: string;
  readonly bytes: Buffer;
}

/** Where the blobs of an image come from; both must verify what they return against the descriptor. */
export interface BlobSource {
  /** A small blob (the config), fully read and verified. */
  readonly blob: (desc: Descriptor) => Promise<Buffer>;
  /** A layer blob's bytes, verified as they stream (throwing `ERR_OCI_DIGEST` before a bad blob ends). */
  readonly blobChunks: (desc: Descriptor) => AsyncIterable<Buffer>;
}

/** An image whose manifest is resolved, ready for {@link ingestImage}. */
export interface ResolvedImage {
  /** The canonical reference the record is stored under. */
  readonly reference: string;
  readonly manifest: ManifestBytes & { readonly parsed: ImageManifest };
  /** The index the manifest was chosen from for `platform`, when there was one. */
  readonly index: ManifestBytes | undefined;
  /** The platform asked for: a config that contradicts it after a choice from an index is an error. */
  readonly platform: Platform;
}

/** Options shared by {@link ingestImage}'s callers. */
export interface IngestOptions {
  /** Layers fetched at once (default 3). */
  readonly concurrency?: number;
  /** Called with progress events. */
  readonly onProgress?: (event: PullEvent) => void;
}

/** Image configs are read into memory: a manifest may not claim a bigger one. */
export const MAX_CONFIG = 16 << 20;

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

async function* counting(source: AsyncIterable<Buffer>, desc: Descriptor, onProgress: IngestOptions["onProgress"]): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of source) {
    bytes += chunk.length;
    onProgress?.({ type: "layer-progress", digest: desc.digest, bytes, size: desc.size });
    yield chunk;
  }
}

/**
 * Stores a resolved image: pins its digests, writes the index and manifest
 * blobs, the config (verified, platform-checked) and each layer once (a layer
 * already unpacked is not fetched again), then writes the image record.
 *
 * @throws {@link OciError} with a stable code; nothing of a failed blob is left in the store and no record is written.
 */
export async function ingestImage(store: ImageStore, image: ResolvedImage, source: BlobSource, options: IngestOptions = {}): Promise<ImageDetails> {
  const { reference, manifest, index } = image;
  const { config: configDesc, layers } = manifest.parsed;
  if (configDesc.size > MAX_CONFIG) throw new OciError("ERR_OCI_MANIFEST", reference, `config of ${configDesc.size} bytes is over the ${MAX_CONFIG}-byte limit`);
  options.onProgress?.({ type: "manifest", reference, digest: manifest.digest, layers });
  const digests = [manifest.digest, configDesc.digest, ...layers.map((l) => l.digest), ...(index === undefined ? [] : [index.digest])];
  const unpin = await store.pin(digests);
  try {
    if (index !== undefined) await store.writeBlob({ digest: index.digest, size: index.bytes.length }, index.bytes);
    await store.writeBlob({ digest: manifest.digest, size: manifest.bytes.length }, manifest.bytes);
    const configBytes = (await store.hasBlob(configDesc.digest)) ? await store.readBlob(configDesc) : await source.blob(configDesc);
    const config = parseImageConfig(configBytes, configDesc.digest);
    const wanted = image.platform;
    if (config.os !== "" && (config.os !== wanted.os || config.architecture !== wanted.architecture) && index !== undefined) {
      throw new OciError("ERR_OCI_PLATFORM", reference, `config says ${config.os}/${config.architecture}, index said ${formatPlatform(wanted)}`);
    }
    await store.writeBlob(configDesc, configBytes);
    await eachLimited(layers, options.concurrency ?? 3, async (layer) => {
      options.onProgress?.({ type: "layer-start", digest: layer.digest, size: layer.size });
      let cached = true;
      await store.ensureLayer(layer, () => {
        cached = false;
        return counting(source.blobChunks(layer), layer, options.onProgress);
      });
      options.onProgress?.({ type: "layer-done", digest: layer.digest, cached });
    });
    await store.putImage({
      reference,
      digest: manifest.digest,
      indexDigest: index?.digest,
      mediaType: manifest.parsed.mediaType,
      platform: formatPlatform(config.os === "" ? wanted : { os: config.os, architecture: config.architecture, variant: config.variant }),
      config: configDesc,
      layers,
      pulledAt: new Date().toISOString(),
      created: config.created,
    });
  } finally {
    await unpin();
  }
  return store.inspectImage(reference);
}
