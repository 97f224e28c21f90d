import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CborError, cborDiagnostic, decodeCbor, encodeCbor, type CborValue } from "./cbor.js";
import { FLAG_END, FrameError, FrameReader, MAX_BODY, decodeFrame, encodeFrame } from "./frame.js";

interface Vector {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly id?: number;
  readonly flags?: number;
  readonly diagnostic?: string;
}

function loadVectors(): { good: Vector[]; bad: Vector[] } {
  const text = readFileSync(new URL("../golden/frames.txt", import.meta.url), "utf8");
  const good: Vector[] = [];
  const bad: Vector[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const [kind, name = "", ...rest] = line.split(" ");
    if (kind === "ok") {
      const [id = "", flags = "", hex = "", ...diag] = rest;
      good.push({ name, id: Number(id), flags: Number(flags), bytes: Buffer.from(hex, "hex"), diagnostic: diag.join(" ") });
    } else if (kind === "bad") bad.push({ name, bytes: Buffer.from(rest[0] ?? "", "hex") });
    else throw new Error(`golden line of unknown kind: ${line}`);
  }
  return { good, bad };
}

const { good, bad } = loadVectors();

describe("golden frames (PROTOCOL.md §5)", () => {
  it("has vectors of both kinds", () => {
    expect(good.length).toBeGreaterThanOrEqual(20);
    expect(bad.length).toBeGreaterThanOrEqual(15);
  });

  it.each(good)("$name decodes to its id, flags and value, and encodes back to the same bytes", (vector) => {
    const frame = decodeFrame(vector.bytes);
    expect(frame.id).toBe(vector.id);
    expect(frame.flags).toBe(vector.flags);
    expect(frame.body === undefined ? "-" : cborDiagnostic(frame.body)).toBe(vector.diagnostic);
    expect(Buffer.from(encodeFrame(frame.id, frame.flags, frame.body))).toEqual(Buffer.from(vector.bytes));
  });

  it.each(bad)("$name is rejected", (vector) => {
    expect(() => decodeFrame(vector.bytes)).toThrow(/./);
    try {
      decodeFrame(vector.bytes);
    } catch (error) {
      expect(error instanceof CborError || error instanceof FrameError).toBe(true);
      expect((error as CborError | FrameError).code).toBe("EPROTO");
    }
  });
});

describe("CBOR subset", () => {
  it("round-trips every kind of value it carries", () => {
    const value: CborValue = {
      t: "x",
      ints: [0, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, -1, -24, -25, -(2 ** 32), Number.MIN_SAFE_INTEGER],
      big: [2n ** 64n - 1n, -(2n ** 63n)],
      text: "héllo \u0000 \u{1f600}",
      data: Uint8Array.from([0, 1, 255]),
      nested: { a: [true, false, null], b: {} },
    };
    expect(decodeCbor(encodeCbor(value))).toEqual(value);
  });

  it("encodes text as UTF-8 whatever its length and characters", () => {
    const texts = ["", "a", "x".repeat(23), "x".repeat(24), "x".repeat(64), "x".repeat(65), "é", `${"x".repeat(63)}é`, `é${"x".repeat(63)}`, "\u{1f600}", "\u007f\u0080", "y".repeat(300)];
    for (const text of texts) {
      const utf8 = Buffer.from(text, "utf8");
      const head = utf8.length < 24 ? [0x60 | utf8.length] : utf8.length < 256 ? [0x78, utf8.length] : [0x79, utf8.length >> 8, utf8.length & 0xff];
      expect(Buffer.from(encodeCbor(text)).toString("hex"), text).toBe(Buffer.concat([Buffer.from(head), utf8]).toString("hex"));
      expect(decodeCbor(encodeCbor({ [text]: text }))).toEqual({ [text]: text });
    }
  });

  it("rejects short and long text strings that are not UTF-8", () => {
    for (const bad of ["6180", "62c080", "63e28228", "78" + "41" + "61".repeat(64) + "ff"]) {
      expect(() => decodeCbor(Buffer.from(bad, "hex")), bad).toThrow(/not valid UTF-8/);
    }
  });

  it("returns each encoding as its own bytes, also after a large one", () => {
    const first = encodeCbor({ t: "first" });
    const large = encodeCbor({ t: "data", data: new Uint8Array(200_000).fill(9) });
    const second = encodeCbor({ t: "second" });
    expect(decodeCbor(first)).toEqual({ t: "first" });
    expect((decodeCbor(large) as { data: Uint8Array }).data.every((b) => b === 9)).toBe(true);
    expect(decodeCbor(second)).toEqual({ t: "second" });
  });

  it("keeps a hostile __proto__ key as a plain key", () => {
    const body = Buffer.from("a1695f5f70726f746f5f5fa0", "hex"); // {"__proto__": {}}
    const decoded = decodeCbor(body) as Record<string, unknown>;
    expect(Object.keys(decoded)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(decoded)).toBe(null);
  });

  it("refuses to encode what the subset cannot carry", () => {
    expect(() => encodeCbor(1.5)).toThrow(RangeError);
    expect(() => encodeCbor(2n ** 64n)).toThrow(RangeError);
    let deep: CborValue = 0;
    for (let i = 0; i < 17; i++) deep = [deep];
    expect(() => encodeCbor(deep)).toThrow(RangeError);
  });

  it("accepts depth 16 and rejects 17", () => {
    const nest = (n: number): Uint8Array => Buffer.concat([Buffer.alloc(n, 0x81), Buffer.from([0])]);
    expect(() => decodeCbor(nest(16))).not.toThrow();
    expect(() => decodeCbor(nest(17))).toThrow(CborError);
  });

  it("rejects an array length larger than the body before allocating", () => {
    expect(() => decodeCbor(Buffer.from("9bffffffffffffffff", "hex"))).toThrow(/length exceeds the body/);
  });
});

describe("FrameReader", () => {
  const frames = [encodeFrame(1, 0, { t: "ping" }), encodeFrame(2, FLAG_END, { t: "stdout", data: new Uint8Array(70_000).fill(7) }), encodeFrame(3, 0, { t: "ok" })];
  const stream = Buffer.concat(frames);

  it("reassembles frames split at every byte boundary", () => {
    for (const size of [1, 2, 3, 5, 8, 9, 10, 4096, stream.length]) {
      const reader = new FrameReader();
      const out = [];
      for (let i = 0; i < stream.length; i += size) out.push(...reader.push(stream.subarray(i, i + size)));
      expect(out.map((f) => f.id)).toEqual([1, 2, 3]);
      expect(reader.buffered).toBe(0);
    }
  });

  it("rejects a length beyond the limit as soon as the length is known", () => {
    const header = Buffer.alloc(4);
    header.writeUInt32LE(5 + MAX_BODY + 1);
    expect(() => new FrameReader().push(header)).toThrow(FrameError);
    header.writeUInt32LE(4);
    expect(() => new FrameReader().push(header)).toThrow(FrameError);
  });

  it("rejects reserved flags", () => {
    const frame = encodeFrame(1, 0, { t: "ping" });
    frame[8] = 0x80;
    expect(() => new FrameReader().push(frame)).toThrow(/reserved flags/);
  });
});
