import { FsBackend } from "./backend.js";
import { FsError } from "./errno.js";
import { mapMaybe } from "./maybe.js";
import type { Context, DynFileSystem, MaybePromise } from "./types.js";

/** Where the data of a hooked read or write belongs. */
export interface DataHookInfo {
  readonly ctx: Context;
  readonly ino: number;
  readonly fh: number;
  /** File offset of the first byte of the data. */
  readonly offset: number;
}

/** Data transforms applied by {@link withHooks}. */
export interface DataHooks {
  /** Transforms data read from the inner filesystem before the caller sees it. */
  readonly onRead?: (data: Uint8Array, info: DataHookInfo) => MaybePromise<Uint8Array>;
  /** Transforms data before the inner filesystem stores it. */
  readonly onWrite?: (data: Uint8Array, info: DataHookInfo) => MaybePromise<Uint8Array>;
}

/**
 * Wraps a filesystem so file data passes through `onRead` / `onWrite`; every
 * other operation goes to `fs` unchanged.
 *
 * Hooks see data with its file offset, so offset-keyed transforms (a stream
 * cipher such as AES-CTR, byte-wise XOR) work. A hook should keep the length:
 * a write whose transformed data the inner filesystem stores only partly
 * fails with `EIO`, since the untransformed length written cannot be known.
 * `copyFileRange` answers `ENOSYS` so the kernel falls back to read + write,
 * which pass through the hooks.
 *
 * @example
 * ```ts
 * const xor = (data: Uint8Array) => data.map((b) => b ^ 0x5a);
 * const fs = withHooks(new MemFs(), { onRead: xor, onWrite: xor });
 * ```
 */
export function withHooks(fs: DynFileSystem, hooks: DataHooks): DynFileSystem {
  return new HookedFs(fs, hooks);
}

class HookedFs extends FsBackend {
  readonly #hooks: DataHooks;

  constructor(inner: DynFileSystem, hooks: DataHooks) {
    super(inner);
    this.#hooks = hooks;
  }

  override read(ctx: Context, ino: number, fh: number, size: number, offset: number): MaybePromise<Uint8Array> {
    const data = super.read(ctx, ino, fh, size, offset);
    const onRead = this.#hooks.onRead;
    if (onRead === undefined) return data;
    return mapMaybe(data, (d) => onRead(d, { ctx, ino, fh, offset }));
  }

  override write(
    ctx: Context,
    ino: number,
    fh: number,
    data: Uint8Array,
    offset: number,
    flags: number,
  ): MaybePromise<number> {
    const onWrite = this.#hooks.onWrite;
    if (onWrite === undefined) return super.write(ctx, ino, fh, data, offset, flags);
    return mapMaybe(onWrite(data, { ctx, ino, fh, offset }), (stored) =>
      mapMaybe(super.write(ctx, ino, fh, stored, offset, flags), (written) => {
        if (written === stored.length) return data.length;
        if (stored.length === data.length) return written;
        throw new FsError("EIO", {
          op: "write",
          ino,
          detail: `inner filesystem stored ${written} of ${stored.length} transformed bytes`,
        });
      }),
    );
  }

  override copyFileRange(): never {
    throw new FsError("ENOSYS", { op: "copyFileRange", detail: "hooked data must pass through read and write" });
  }
}
