/** Size of the file the killed child copies up: 48 chunks of 1 MiB. */
export const BIG_SIZE = 48 * 1024 * 1024;

/** The file's content, the same in every process. */
export function bigContent(): Uint8Array {
  return new Uint8Array(BIG_SIZE).map((_, i) => (i >>> 12) & 0xff);
}
