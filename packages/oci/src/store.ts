// The content store under $MSB_HOME/cache: blobs by digest, one directory per
// unpacked layer, image records, and reference-counted removal.
import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, unlink, type FileHandle } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { digestHex, verifyBytes, type Descriptor } from "./digest.js";
import { writeNewFileSynced } from "./durable.js";
import { OciError } from "./errors.js";
import { processAlive, withLock } from "./lock.js";
import { LAYER_MEDIA_TYPES, parseImageConfig, type ImageConfig } from "./manifest.js";
import { formatReference, parseReference } from "./reference.js";
import { coalesce, HANDOFF, unpackLayer } from "./unpack.js";

/** Options of an {@link ImageStore}. */
export interface StoreOptions {
  /** msb's home directory (default `$MSB_HOME`, else `~/.msb`); the store lives in its `cache/`. */
  readonly home?: string;
  /** How long to wait for another process's lock, in ms (default 10 minutes). */
  readonly lockTimeoutMs?: number;
}

/** What the store knows about one pulled image reference. */
export interface ImageRecord {
  /** Canonical reference it was pulled as, e.g. `docker.io/library/busybox:latest`. */
  readonly reference: string;
  /** Digest of the platform's image manifest. */
  readonly digest: string;
  /** Digest of the index the manifest was chosen from, if the reference named an index. */
  readonly indexDigest: string | undefined;
  readonly mediaType: string;
  /** `os/arch[/variant]` of the manifest. */
  readonly platform: string;
  readonly config: Descriptor;
  /** Layers, bottom first. */
  readonly layers: readonly Descriptor[];
  /** ISO time of the pull. */
  readonly pulledAt: string;
  /** ISO time the image was built (its config's `created`), when the config says. */
  readonly created?: string | undefined;
}

/** An image record with its parsed config and unpacked layer directories. */
export interface ImageDetails extends ImageRecord {
  readonly imageConfig: ImageConfig;
  /** Absolute paths of the unpacked layer directories, bottom first. */
  readonly layerDirs: readonly string[];
}

/** What a removal or prune deleted. */
export interface RemoveResult {
  readonly images: readonly string[];
  readonly blobs: readonly string[];
  readonly layers: readonly string[];
}

/** The default msb home: `$MSB_HOME`, else `~/.msb`. */
export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  return env.MSB_HOME !== undefined && env.MSB_HOME !== "" ? env.MSB_HOME : join(homedir(), ".msb");
}

function tempName(prefix: string): string {
  return `.tmp-${prefix}-${process.pid}-${randomBytes(6).toString("hex")}`;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Compressed bytes written to a blob temp file but not yet on it, beyond which the download waits. */
const TEE_BACKLOG = 16 << 20;

/**
 * Writes a layer blob as it streams, on the threadpool and in order, so the
 * JS thread goes on verifying and unpacking; then fsyncs it. A failed write
 * fails the next {@link BlobTee.write} or {@link BlobTee.done}.
 */
class BlobTee {
  readonly #file: FileHandle;
  #queue: Promise<void> = Promise.resolve();
  #backlog = 0;
  #failure: { error: unknown } | undefined;
  #syncing = false;

  constructor(file: FileHandle) {
    this.#file = file;
  }

  #then(step: () => Promise<void>): void {
    this.#queue = this.#queue.then(step).catch((error: unknown) => {
      this.#failure ??= { error };
    });
  }

  /** Queues `chunk` (which must not change afterwards); waits while the backlog is too big. */
  async write(chunk: Buffer): Promise<void> {
    if (this.#failure !== undefined) throw this.#failure.error;
    this.#backlog += chunk.length;
    this.#then(async () => {
      for (let off = 0; off < chunk.length; ) off += (await this.#file.write(chunk, off, chunk.length - off)).bytesWritten;
      this.#backlog -= chunk.length;
    });
    if (this.#backlog > TEE_BACKLOG) await this.#queue;
  }

  /** Queues the fsync after the last write (once). */
  sync(): void {
    if (this.#syncing) return;
    this.#syncing = true;
    this.#then(() => this.#file.sync());
  }

  /** Waits for the queued writes, whatever their outcome. */
  async idle(): Promise<void> {
    await this.#queue;
  }

  /** Waits for every queued write and the fsync; throws the first failure. */
  async done(): Promise<void> {
    this.sync();
    await this.#queue;
    if (this.#failure !== undefined) throw this.#failure.error;
  }
}

/**
 * The on-disk content store: `cache/blobs/sha256/<hex>` (manifests, configs
 * and layer blobs), `cache/layers/sha256/<hex>/` (each layer unpacked once),
 * `cache/images/<sha256 of reference>.json` (records), `cache/locks/` and
 * `cache/pins/` (pulls in progress). Every file appears by rename from a
 * temp name, so a reader never sees half of anything; processes coordinate
 * through lock files.
 */
export class ImageStore {
  /** `<home>/cache`. */
  readonly root: string;
  readonly #lockTimeoutMs: number | undefined;

  constructor(options: StoreOptions = {}) {
    this.root = join(options.home ?? defaultHome(), "cache");
    this.#lockTimeoutMs = options.lockTimeoutMs;
  }

  /** Path of a blob by digest. */
  blobPath(digest: string): string {
    return join(this.root, "blobs", "sha256", digestHex(digest));
  }

  /** Path of an unpacked layer directory by the layer blob's digest. */
  layerPath(digest: string): string {
    return join(this.root, "layers", "sha256", digestHex(digest));
  }

  #lockPath(name: string): string {
    return join(this.root, "locks", `${name}.lock`);
  }

  #imagePath(reference: string): string {
    return join(this.root, "images", `${createHash("sha256").update(reference).digest("hex")}.json`);
  }

  async #dirs(): Promise<void> {
    for (const dir of ["blobs/sha256", "layers/sha256", "images", "locks", "pins"]) await mkdir(join(this.root, dir), { recursive: true });
  }

  /** True when the blob is in the store. */
  hasBlob(digest: string): Promise<boolean> {
    return exists(this.blobPath(digest));
  }

  /** True when the layer is unpacked in the store (its directory is renamed into place complete). */
  hasLayer(digest: string): Promise<boolean> {
    return exists(this.layerPath(digest));
  }

  /** Reads a blob and re-verifies it against its descriptor. */
  async readBlob(desc: Pick<Descriptor, "digest" | "size">): Promise<Buffer> {
    const bytes = await readFile(this.blobPath(desc.digest));
    verifyBytes(bytes, desc);
    return bytes;
  }

  /** Writes a verified blob: temp file, fsync, rename (identical content, so racing writers are harmless). */
  async writeBlob(desc: Pick<Descriptor, "digest" | "size">, bytes: Uint8Array): Promise<void> {
    verifyBytes(bytes, desc);
    await this.#dirs();
    if (await this.hasBlob(desc.digest)) return;
    const dir = join(this.root, "blobs", "sha256");
    const temp = join(dir, tempName(digestHex(desc.digest)));
    await writeNewFileSynced(temp, bytes, 0o644);
    await rename(temp, this.blobPath(desc.digest));
  }

  /**
   * Makes sure the layer is unpacked: under the layer's lock, streams
   * `chunks()` (which must verify the digest, as
   * {@link RegistryClient.blobChunks} does) through decompression and untar
   * into a temp directory while teeing the compressed bytes into a temp
   * blob, then renames both into place. On any failure both temps are
   * removed. Another process unpacking the same layer is waited for.
   */
  async ensureLayer(desc: Descriptor, chunks: () => AsyncIterable<Buffer>): Promise<string> {
    const hex = digestHex(desc.digest);
    const final = this.layerPath(desc.digest);
    // The directory is renamed into place last, so its presence means the layer is complete.
    if (await exists(final)) return final;
    const compression = LAYER_MEDIA_TYPES[desc.mediaType];
    if (compression === undefined) throw new OciError("ERR_OCI_LAYER", desc.digest, `unsupported layer media type ${desc.mediaType}`);
    await this.#dirs();
    await withLock(
      this.#lockPath(`layer-${hex}`),
      async () => {
        if (await exists(final)) return;
        const tempDir = join(this.root, "layers", "sha256", tempName(hex));
        const tempBlob = join(this.root, "blobs", "sha256", tempName(hex));
        await mkdir(tempDir, { mode: 0o700 });
        const blob = await open(tempBlob, "wx", 0o644);
        let blobOpen = true;
        const teed = new BlobTee(blob);
        try {
          const tee = async function* (): AsyncGenerator<Buffer> {
            // Big pieces: each write is a trip to the threadpool.
            for await (const chunk of coalesce(chunks(), HANDOFF)) {
              await teed.write(chunk);
              yield chunk;
            }
            // The blob is whole (and verified): its fsync overlaps the unpacking of the last entries.
            teed.sync();
          };
          await unpackLayer(tee(), compression, tempDir, { name: desc.digest });
          await teed.done();
          blobOpen = false;
          await blob.close();
          await rename(tempBlob, this.blobPath(desc.digest));
          await rename(tempDir, final);
        } catch (error) {
          if (blobOpen) {
            await teed.idle();
            await blob.close().catch(() => undefined);
          }
          await rm(tempDir, { recursive: true, force: true });
          await rm(tempBlob, { force: true });
          throw error;
        }
      },
      this.#lockTimeoutMs,
    );
    return final;
  }

  /** Runs `fn` while holding the store-wide lock that removal and prune take. */
  withStoreLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.#dirs().then(() => withLock(this.#lockPath("gc"), fn, this.#lockTimeoutMs));
  }

  /**
   * Records that this process is pulling `digests`, so a concurrent prune
   * keeps them. Returns the function that drops the pin.
   */
  async pin(digests: readonly string[]): Promise<() => Promise<void>> {
    const path = join(this.root, "pins", `${process.pid}-${randomBytes(6).toString("hex")}.json`);
    await this.withStoreLock(async () => {
      const handle = await open(path, "wx", 0o644);
      try {
        await handle.writeFile(JSON.stringify({ pid: process.pid, digests }));
      } finally {
        await handle.close();
      }
    });
    return () => unlink(path).catch(() => undefined);
  }

  /** Writes (or replaces) an image record atomically. */
  async putImage(record: ImageRecord): Promise<void> {
    await this.#dirs();
    const path = this.#imagePath(record.reference);
    const temp = join(this.root, "images", tempName("image"));
    await writeNewFileSynced(temp, `${JSON.stringify(record, null, 2)}\n`, 0o644);
    await rename(temp, path);
  }

  /** Every image record, sorted by reference. */
  async listImages(): Promise<ImageRecord[]> {
    const dir = join(this.root, "images");
    const names = await readdir(dir).catch(() => [] as string[]);
    const records: ImageRecord[] = [];
    for (const name of names) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      try {
        records.push(JSON.parse(await readFile(join(dir, name), "utf8")) as ImageRecord);
      } catch {
        // Removed meanwhile: not an image any more.
      }
    }
    return records.sort((a, b) => a.reference.localeCompare(b.reference));
  }

  /** The record of a reference (normalised, so `busybox` finds `docker.io/library/busybox:latest`), or undefined. */
  async getImage(reference: string): Promise<ImageRecord | undefined> {
    const canonical = formatReference(parseReference(reference));
    try {
      return JSON.parse(await readFile(this.#imagePath(canonical), "utf8")) as ImageRecord;
    } catch {
      return undefined;
    }
  }

  /**
   * The record, typed config and layer directories of a pulled image.
   *
   * @throws {@link OciError} `ERR_OCI_IMAGE_NOT_FOUND` when it was not pulled.
   */
  async inspectImage(reference: string): Promise<ImageDetails> {
    const record = await this.getImage(reference);
    if (record === undefined) throw new OciError("ERR_OCI_IMAGE_NOT_FOUND", reference, "image is not in the store; pull it first");
    const imageConfig = parseImageConfig(await this.readBlob(record.config), record.config.digest);
    return { ...record, imageConfig, layerDirs: record.layers.map((l) => this.layerPath(l.digest)) };
  }

  /**
   * Removes an image record, then every blob and layer no other image (or
   * pull in progress) references: a layer shared by two images survives
   * removing one of them.
   *
   * @throws {@link OciError} `ERR_OCI_IMAGE_NOT_FOUND`.
   */
  async removeImage(reference: string): Promise<RemoveResult> {
    const canonical = formatReference(parseReference(reference));
    return this.withStoreLock(async () => {
      const path = this.#imagePath(canonical);
      if (!(await exists(path))) throw new OciError("ERR_OCI_IMAGE_NOT_FOUND", reference, "image is not in the store");
      await unlink(path);
      const swept = await this.#sweep(false);
      return { ...swept, images: [canonical] };
    });
  }

  /** Deletes unreferenced blobs and layers and the leftovers of crashed pulls. */
  async prune(): Promise<RemoveResult> {
    return this.withStoreLock(async () => ({ ...(await this.#sweep(true)), images: [] }));
  }

  async #referenced(): Promise<Set<string>> {
    const keep = new Set<string>();
    for (const record of await this.listImages()) {
      for (const digest of [record.digest, record.indexDigest, record.config.digest, ...record.layers.map((l) => l.digest)]) {
        if (digest !== undefined) keep.add(digestHex(digest));
      }
    }
    const pins = join(this.root, "pins");
    for (const name of await readdir(pins).catch(() => [] as string[])) {
      try {
        const pin = JSON.parse(await readFile(join(pins, name), "utf8")) as { pid: number; digests: string[] };
        if (!processAlive(pin.pid)) {
          await unlink(join(pins, name));
          continue;
        }
        for (const digest of pin.digests) keep.add(digestHex(digest));
      } catch {
        // A pin being written or removed right now.
      }
    }
    return keep;
  }

  async #sweep(temps: boolean): Promise<{ blobs: string[]; layers: string[] }> {
    await this.#dirs();
    const keep = await this.#referenced();
    const removed = { blobs: [] as string[], layers: [] as string[] };
    for (const [kind, list] of [["blobs", removed.blobs], ["layers", removed.layers]] as const) {
      const dir = join(this.root, kind, "sha256");
      for (const name of await readdir(dir)) {
        if (name.startsWith(".tmp-")) {
          // A temp of a pull still running holds its layer lock; only orphans go.
          const hex = name.split("-")[1] ?? "";
          if (temps && !(await exists(this.#lockPath(`layer-${hex}`)))) await rm(join(dir, name), { recursive: true, force: true });
          continue;
        }
        if (keep.has(name)) continue;
        await rm(join(dir, name), { recursive: true, force: true });
        list.push(`sha256:${name}`);
      }
    }
    return removed;
  }
}
