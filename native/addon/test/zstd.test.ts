import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { zstdDecompress, zstdDecompressAsync, zstdDecompressor, type ZstdDecompressor } from "../index.js";

function compress(data: Buffer): Buffer {
  return execFileSync("zstd", ["-q", "-c"], { input: data, maxBuffer: 1 << 30 });
}

/** Feeds `input` in `step`-byte pieces and collects everything. */
function decompressAll(handle: ZstdDecompressor, input: Buffer, step: number, maxOutput?: number): { data: Buffer; done: boolean } {
  const out: Buffer[] = [];
  let done = false;
  for (let off = 0; off < input.length; off += step) {
    let piece = input.subarray(off, off + step);
    for (;;) {
      const r = zstdDecompress(handle, piece, maxOutput);
      out.push(r.output);
      done = r.done;
      piece = piece.subarray(r.consumed);
      if (piece.length === 0 && r.output.length < (maxOutput ?? 1 << 20)) break;
    }
  }
  return { data: Buffer.concat(out), done };
}

let cli = true;
try {
  execFileSync("zstd", ["--version"]);
} catch {
  cli = false;
}

describe.skipIf(!cli)("zstd", () => {
  it("round-trips data fed in small pieces, with bounded output per call", () => {
    const data = Buffer.from(Array.from({ length: 200_000 }, (_, i) => `line ${i}\n`).join(""));
    const z = compress(data);
    const result = decompressAll(zstdDecompressor(), z, 1000, 4096);
    expect(result.data.equals(data)).toBe(true);
    expect(result.done).toBe(true);
  });

  it("never returns more than maxOutput from a highly compressible frame", () => {
    const z = compress(Buffer.alloc(50 << 20));
    expect(z.length).toBeLessThan(10_000);
    const r = zstdDecompress(zstdDecompressor(), z, 1 << 16);
    expect(r.output.length).toBe(1 << 16);
    expect(r.done).toBe(false);
  });

  it("decodes concatenated frames and reports a truncated one as not done", () => {
    const a = compress(Buffer.from("first "));
    const b = compress(Buffer.from("second"));
    expect(decompressAll(zstdDecompressor(), Buffer.concat([a, b]), 7).data.toString()).toBe("first second");
    const truncated = decompressAll(zstdDecompressor(), b.subarray(0, b.length - 2), 100);
    expect(truncated.done).toBe(false);
  });

  it("throws ERR_MSB_ZSTD on corrupt data and a TypeError on a bad handle", () => {
    expect(() => zstdDecompress(zstdDecompressor(), Buffer.from("definitely not zstd"))).toThrow(expect.objectContaining({ code: "ERR_MSB_ZSTD" }) as Error);
    expect(() => zstdDecompress({} as ZstdDecompressor, Buffer.alloc(1))).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }) as Error);
    expect(() => zstdDecompress(zstdDecompressor(), "x" as unknown as Uint8Array)).toThrow(expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }) as Error);
    expect(() => zstdDecompress(zstdDecompressor(), Buffer.alloc(1), 0)).toThrow(expect.objectContaining({ code: "ERR_OUT_OF_RANGE" }) as Error);
  });

  it("decompresses on the threadpool with the same results, one call per handle at a time", async () => {
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => `row ${i}\n`).join(""));
    const z = compress(data);
    const handle = zstdDecompressor();
    const out: Buffer[] = [];
    let rest = z;
    let done = false;
    for (;;) {
      const r = await zstdDecompressAsync(handle, rest, 1 << 16);
      out.push(r.output);
      done = r.done;
      rest = rest.subarray(r.consumed);
      if (rest.length === 0 && r.output.length < 1 << 16) break;
    }
    expect(Buffer.concat(out).equals(data)).toBe(true);
    expect(done).toBe(true);

    const busy = zstdDecompressor();
    const running = zstdDecompressAsync(busy, z);
    await expect(zstdDecompressAsync(busy, z)).rejects.toMatchObject({ code: "ERR_MSB_ZSTD_BUSY" });
    expect(() => zstdDecompress(busy, z)).toThrow(expect.objectContaining({ code: "ERR_MSB_ZSTD_BUSY" }) as Error);
    expect((await running).consumed).toBeGreaterThan(0);
    await expect(zstdDecompressAsync(zstdDecompressor(), Buffer.from("definitely not zstd"))).rejects.toMatchObject({ code: "ERR_MSB_ZSTD" });
    await expect(zstdDecompressAsync({} as ZstdDecompressor, Buffer.alloc(1))).rejects.toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
  });
});
