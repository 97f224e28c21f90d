const UNITS: Readonly<Record<string, number>> = { "": 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };
const BYTES = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i;

/**
 * A byte count from a string with an optional binary unit (`"4096"`,
 * `"64MiB"`, `"1.5g"`, `"512 KB"`; k = 1024), rounded down to whole bytes;
 * `undefined` when the string is no byte count or exceeds 2^53.
 *
 * @example
 * ```ts
 * parseBytes("64MiB"); // 67108864
 * ```
 */
export function parseBytes(value: string): number | undefined {
  const match = BYTES.exec(value);
  if (match === null) return undefined;
  const bytes = Math.floor(Number(match[1]) * UNITS[match[2]!.toLowerCase()]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
