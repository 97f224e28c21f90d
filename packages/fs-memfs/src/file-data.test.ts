import { describe, expect, it } from "vitest";
import { FileData, GRAIN, PAGE_SIZE, PagePool } from "./file-data.js";

const bytes = (length: number, value: number): Uint8Array => new Uint8Array(length).fill(value);

describe("FileData", () => {
  it("reads holes as zeros and takes no memory for them", () => {
    const file = new FileData();
    expect(file.read(10 * PAGE_SIZE, new Uint8Array(100))).toEqual(new Uint8Array(100));
    expect(file.allocated).toBe(0);
  });

  it("fills every byte of the output: data where there is some, zeros elsewhere", () => {
    const file = new FileData();
    file.write(bytes(10, 1), 100, Infinity);
    const out = file.read(90, bytes(PAGE_SIZE + 100, 0xee));
    expect(out.subarray(0, 10).every((b) => b === 0)).toBe(true);
    expect(out.subarray(10, 20).every((b) => b === 1)).toBe(true);
    expect(out.subarray(20).every((b) => b === 0)).toBe(true);
  });

  it("allocates small files in 512-byte steps from the page start", () => {
    const file = new FileData();
    expect(file.write(bytes(100, 1), 0, Infinity)).toBe(100);
    expect(file.allocated).toBe(GRAIN);
    file.write(bytes(1, 2), 1000, Infinity);
    expect(file.allocated).toBe(1024);
    expect([...file.read(98, new Uint8Array(4))]).toEqual([1, 1, 0, 0]);
  });

  it("grows a page by doubling while that fits, up to 64 KiB", () => {
    const file = new FileData();
    for (let at = 0; at < PAGE_SIZE; at += 4096) file.write(bytes(4096, 7), at, Infinity);
    expect(file.allocated).toBe(PAGE_SIZE);
    file.write(bytes(1, 7), PAGE_SIZE, Infinity);
    expect(file.allocated).toBe(PAGE_SIZE + GRAIN);
  });

  it("writes and reads across page boundaries", () => {
    const file = new FileData();
    const data = new Uint8Array(3 * PAGE_SIZE).map((_, i) => i % 251);
    expect(file.write(data, PAGE_SIZE - 10, Infinity)).toBe(data.length);
    expect(Buffer.compare(file.read(PAGE_SIZE - 10, new Uint8Array(data.length)), data)).toBe(0);
    expect(file.read(0, new Uint8Array(PAGE_SIZE - 10)).every((b) => b === 0)).toBe(true);
  });

  it("keeps a write that fills several pages whole, and its later rewrites and reads, intact", () => {
    const file = new FileData();
    const data = new Uint8Array(20 * PAGE_SIZE + 100).map((_, i) => i % 253);
    expect(file.write(data, PAGE_SIZE, Infinity)).toBe(data.length);
    expect(file.allocated).toBe(20 * PAGE_SIZE + GRAIN);
    expect(Buffer.compare(file.read(PAGE_SIZE, new Uint8Array(data.length)), data)).toBe(0);
    const patch = bytes(2 * PAGE_SIZE, 0xaa);
    expect(file.write(patch, 3 * PAGE_SIZE + 5, 0)).toBe(patch.length);
    const back = file.read(3 * PAGE_SIZE, new Uint8Array(2 * PAGE_SIZE + 10));
    expect([...back.subarray(0, 5)]).toEqual([...data.subarray(2 * PAGE_SIZE, 2 * PAGE_SIZE + 5)]);
    expect(back.subarray(5, 5 + patch.length).every((b) => b === 0xaa)).toBe(true);
    expect([...back.subarray(5 + patch.length)]).toEqual([...data.subarray(4 * PAGE_SIZE + 5, 4 * PAGE_SIZE + 10)]);
    expect(file.nextHole(PAGE_SIZE)).toBe(21 * PAGE_SIZE + GRAIN);
  });

  it("frees one page of a many-page write, and a tail, leaving the rest intact", () => {
    const file = new FileData();
    const data = new Uint8Array(8 * PAGE_SIZE).map((_, i) => i % 251);
    file.write(data, 0, Infinity);
    file.punch(3 * PAGE_SIZE, 4 * PAGE_SIZE);
    expect(file.allocated).toBe(7 * PAGE_SIZE);
    expect(file.nextHole(0)).toBe(3 * PAGE_SIZE);
    expect(file.nextData(3 * PAGE_SIZE)).toBe(4 * PAGE_SIZE);
    // The page comes back alone; its former neighbours do not change with it.
    file.write(bytes(10, 0xbb), 3 * PAGE_SIZE + 20, Infinity);
    file.truncate(6 * PAGE_SIZE + 1000);
    expect(file.allocated).toBe(5 * PAGE_SIZE + GRAIN + 1024);
    const expected = data.slice(0, 6 * PAGE_SIZE + 1000);
    expected.fill(0, 3 * PAGE_SIZE, 4 * PAGE_SIZE);
    expected.fill(0xbb, 3 * PAGE_SIZE + 20, 3 * PAGE_SIZE + 30);
    expect(Buffer.compare(file.read(0, new Uint8Array(8 * PAGE_SIZE)), Buffer.concat([expected, new Uint8Array(2 * PAGE_SIZE - 1000)]))).toBe(0);
  });

  it("writes as much of a many-page write as the budget allows, as page by page", () => {
    const file = new FileData();
    expect(file.write(bytes(3 * PAGE_SIZE, 1), 0, 2 * PAGE_SIZE + 4096)).toBe(2 * PAGE_SIZE + 4096);
    expect(file.allocated).toBe(2 * PAGE_SIZE + 4096);
    expect(file.write(bytes(PAGE_SIZE, 1), 2 * PAGE_SIZE, PAGE_SIZE - 4096)).toBe(PAGE_SIZE);
    expect(file.allocated).toBe(3 * PAGE_SIZE);
  });

  it("holds, frees and reads as page-by-page writes would, under mixed operations", () => {
    // `whole` takes each write at once, so several whole pages become one run; `paged` takes it
    // a page at a time, which makes no run; `model` is the plain bytes.
    const span = 40 * PAGE_SIZE;
    const whole = new FileData(new PagePool(8 * PAGE_SIZE));
    const paged = new FileData(new PagePool(8 * PAGE_SIZE));
    const model = new Uint8Array(span + PAGE_SIZE);
    let seed = 11;
    const random = (below: number): number => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % below;
    };
    const position = (): number => (random(2) === 0 ? random(40) * PAGE_SIZE : random(span));
    const budget = (): number => (random(3) === 0 ? random(4 * PAGE_SIZE) : Infinity);
    const writePaged = (data: Uint8Array, offset: number, limit: number): number => {
      const before = paged.allocated;
      let done = 0;
      while (done < data.length) {
        const piece = Math.min(data.length - done, PAGE_SIZE - ((offset + done) % PAGE_SIZE));
        const n = paged.write(data.subarray(done, done + piece), offset + done, limit - (paged.allocated - before));
        done += n;
        if (n < piece) break;
      }
      return done;
    };
    for (let step = 0; step < 300; step++) {
      const start = position();
      const end = Math.min(span, start + 1 + (random(2) === 0 ? random(20) * PAGE_SIZE : random(3 * PAGE_SIZE)));
      const choice = random(6);
      if (choice <= 1) {
        const data = bytes(end - start, 1 + (step % 255));
        const limit = budget();
        const written = whole.write(data, start, limit);
        expect(writePaged(data, start, limit)).toBe(written);
        model.set(data.subarray(0, written), start);
      } else if (choice === 2) {
        whole.punch(start, end);
        paged.punch(start, end);
        model.fill(0, start, end);
      } else if (choice === 3) {
        whole.truncate(start);
        paged.truncate(start);
        model.fill(0, start);
      } else if (choice === 4) {
        const limit = budget();
        expect(whole.allocate(start, end, limit)).toBe(paged.allocate(start, end, limit));
        whole.zero(start, end);
        paged.zero(start, end);
        model.fill(0, start, end);
      } else {
        // Within one file, to a range after the source that does not overlap it.
        const count = Math.min(end - start, span - end);
        if (count === 0) continue;
        const limit = budget();
        const copied = whole.copyTo(whole, start, count, end, limit);
        expect(paged.copyTo(paged, start, count, end, limit)).toBe(copied);
        model.copyWithin(end, start, start + copied);
      }
      expect(whole.allocated).toBe(paged.allocated);
      expect(Buffer.compare(whole.read(0, new Uint8Array(model.length)), model)).toBe(0);
      expect(Buffer.compare(paged.read(0, new Uint8Array(model.length)), model)).toBe(0);
      const probe = random(span);
      expect(whole.nextData(probe)).toBe(paged.nextData(probe));
      expect(whole.nextHole(probe)).toBe(paged.nextHole(probe));
    }
  });

  it("writes only what the budget allows, in whole grains", () => {
    const file = new FileData();
    expect(file.write(bytes(5000, 1), 0, 4096)).toBe(4096);
    expect(file.allocated).toBe(4096);
    expect(file.write(bytes(100, 1), 8192, 100)).toBe(0);
    expect(file.allocated).toBe(4096);
    // Rewriting allocated bytes needs no budget.
    expect(file.write(bytes(4096, 2), 0, 0)).toBe(4096);
  });

  it("punches whole pages away and zeroes partial ones", () => {
    const file = new FileData();
    file.write(bytes(3 * PAGE_SIZE, 9), 0, Infinity);
    file.punch(PAGE_SIZE, 2 * PAGE_SIZE);
    expect(file.allocated).toBe(2 * PAGE_SIZE);
    file.punch(10, 20);
    expect(file.allocated).toBe(2 * PAGE_SIZE);
    expect([...file.read(8, new Uint8Array(4))]).toEqual([9, 9, 0, 0]);
    expect(file.nextData(PAGE_SIZE)).toBe(2 * PAGE_SIZE);
    expect(file.nextHole(0)).toBe(PAGE_SIZE);
  });

  it("frees a page's tail on truncate and keeps it zero", () => {
    const file = new FileData();
    file.write(bytes(PAGE_SIZE + 100, 5), 0, Infinity);
    file.truncate(1000);
    expect(file.allocated).toBe(1024);
    expect(file.read(999, new Uint8Array(25))).toEqual(new Uint8Array([5, ...new Uint8Array(24)]));
    file.truncate(0);
    expect(file.allocated).toBe(0);
  });

  it("allocates a range all or nothing", () => {
    const file = new FileData();
    file.write(bytes(10, 1), 0, Infinity);
    expect(file.allocationNeeded(0, 2 * PAGE_SIZE)).toBe(2 * PAGE_SIZE - GRAIN);
    expect(file.allocate(0, 2 * PAGE_SIZE, PAGE_SIZE)).toBe(false);
    expect(file.allocated).toBe(GRAIN);
    expect(file.allocate(0, 2 * PAGE_SIZE, 2 * PAGE_SIZE)).toBe(true);
    expect(file.allocated).toBe(2 * PAGE_SIZE);
    expect([...file.read(8, new Uint8Array(4))]).toEqual([1, 1, 0, 0]);
  });

  it("finds data and holes", () => {
    const file = new FileData();
    file.write(bytes(10, 1), 5 * PAGE_SIZE + 3, Infinity);
    expect(file.nextData(0)).toBe(5 * PAGE_SIZE);
    expect(file.nextData(5 * PAGE_SIZE + 7)).toBe(5 * PAGE_SIZE + 7);
    expect(file.nextData(5 * PAGE_SIZE + GRAIN)).toBe(Infinity);
    expect(file.nextHole(0)).toBe(0);
    expect(file.nextHole(5 * PAGE_SIZE)).toBe(5 * PAGE_SIZE + GRAIN);
  });

  it("copies data and keeps holes holes", () => {
    const src = new FileData();
    const dst = new FileData();
    src.write(bytes(10, 1), 0, Infinity);
    src.write(bytes(10, 2), 4 * PAGE_SIZE, Infinity);
    dst.write(bytes(6 * PAGE_SIZE, 7), 0, Infinity);
    expect(src.copyTo(dst, 0, 4 * PAGE_SIZE + 10, 100, Infinity)).toBe(4 * PAGE_SIZE + 10);
    const back = dst.read(0, new Uint8Array(6 * PAGE_SIZE));
    expect(back.subarray(0, 100).every((b) => b === 7)).toBe(true);
    expect(back.subarray(100, 110).every((b) => b === 1)).toBe(true);
    expect(back.subarray(110, 100 + 4 * PAGE_SIZE).every((b) => b === 0)).toBe(true);
    expect(back.subarray(100 + 4 * PAGE_SIZE, 110 + 4 * PAGE_SIZE).every((b) => b === 2)).toBe(true);
    expect(back[110 + 4 * PAGE_SIZE]).toBe(7);
    // The pages the hole covered whole are gone from the destination.
    expect(dst.allocated).toBeLessThan(6 * PAGE_SIZE);
  });

  it("copies within one file between ranges that do not overlap", () => {
    const file = new FileData();
    file.write(new Uint8Array([1, 2, 3, 4]), 0, Infinity);
    expect(file.copyTo(file, 0, 4, PAGE_SIZE * 2 + 1, Infinity)).toBe(4);
    expect([...file.read(PAGE_SIZE * 2, new Uint8Array(6))]).toEqual([0, 1, 2, 3, 4, 0]);
  });

  it("stops a copy where the destination's budget ends", () => {
    const src = new FileData();
    const dst = new FileData();
    src.write(bytes(3 * PAGE_SIZE, 1), 0, Infinity);
    expect(src.copyTo(dst, 0, 3 * PAGE_SIZE, 0, PAGE_SIZE + 1024)).toBe(PAGE_SIZE + 1024);
  });
});

describe("PagePool", () => {
  it("lends freed pages to the next writes of any file, never showing their old bytes", () => {
    const pool = new PagePool(8 * PAGE_SIZE);
    const old = new FileData(pool);
    for (let page = 0; page < 3; page++) old.write(bytes(PAGE_SIZE, 0xff), page * PAGE_SIZE, Infinity);
    old.truncate(0);
    expect(old.allocated).toBe(0);
    const file = new FileData(pool);
    // Whole pages overwritten at once may come back dirty; a partly written one must read zeros elsewhere.
    expect(file.write(bytes(PAGE_SIZE, 1), 0, Infinity)).toBe(PAGE_SIZE);
    expect(file.write(bytes(10, 2), 2 * PAGE_SIZE + 100, Infinity)).toBe(10);
    file.allocate(4 * PAGE_SIZE, 5 * PAGE_SIZE, Infinity);
    const back = file.read(0, new Uint8Array(5 * PAGE_SIZE));
    expect(back.subarray(0, PAGE_SIZE).every((b) => b === 1)).toBe(true);
    expect(back.subarray(PAGE_SIZE, 2 * PAGE_SIZE + 100).every((b) => b === 0)).toBe(true);
    expect(back.subarray(2 * PAGE_SIZE + 100, 2 * PAGE_SIZE + 110).every((b) => b === 2)).toBe(true);
    expect(back.subarray(2 * PAGE_SIZE + 110).every((b) => b === 0)).toBe(true);
    expect(file.allocated).toBe(PAGE_SIZE + GRAIN + PAGE_SIZE);
  });

  it("takes back a many-page write whole when it is freed whole, for the next such write", () => {
    const pool = new PagePool(8 * PAGE_SIZE);
    const old = new FileData(pool);
    old.write(bytes(4 * PAGE_SIZE, 0xff), 0, Infinity);
    old.truncate(0);
    const file = new FileData(pool);
    expect(file.write(bytes(4 * PAGE_SIZE, 1), 0, Infinity)).toBe(4 * PAGE_SIZE);
    expect(file.read(0, new Uint8Array(4 * PAGE_SIZE)).every((b) => b === 1)).toBe(true);
    // The pool lent its only array: a new one of that length is zeros.
    expect(pool.take(4 * PAGE_SIZE, false).every((b) => b === 0)).toBe(true);
  });

  it("copies within one file intact when the write retires the source page and takes it back", () => {
    const file = new FileData(new PagePool(8 * PAGE_SIZE));
    const data = new Uint8Array(100).map((_, i) => i + 1);
    file.write(data, 0, Infinity);
    // The destination grows page 0 past its 512 bytes (the old page goes to the pool) and
    // then needs a 512-byte page 1, which the pool answers with that old page.
    expect(file.copyTo(file, 0, 100, PAGE_SIZE - 36, Infinity)).toBe(100);
    expect([...file.read(PAGE_SIZE - 36, new Uint8Array(100))]).toEqual([...data]);
    expect([...file.read(0, new Uint8Array(100))]).toEqual([...data]);
  });

  it("keeps at most its limit of bytes, and gives pages back by length", () => {
    const pool = new PagePool(PAGE_SIZE + GRAIN);
    const whole = new Uint8Array(PAGE_SIZE).fill(7);
    const small = new Uint8Array(GRAIN).fill(7);
    pool.give(whole);
    pool.give(small);
    pool.give(new Uint8Array(GRAIN));
    expect(pool.take(GRAIN, true)).toBe(small);
    expect(pool.take(PAGE_SIZE, false)).toBe(whole);
    expect(whole.every((b) => b === 0)).toBe(true);
    expect(pool.take(GRAIN, true)).not.toBe(small);
  });
});
