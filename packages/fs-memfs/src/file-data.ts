// The bytes of one regular file, stored sparsely: a map of 64 KiB pages of
// which only the written ones exist. A page holds the bytes from its start up
// to its length (a multiple of 512, grown by doubling as writes extend it);
// everything past that, and every missing page, reads as zeros and takes no
// memory. Bytes past the file's size are kept zero, so growing the size
// needs no work.
//
// A write that fills several missing pages whole makes them one array, a run,
// each page a view of its part: copying a MiB in one piece takes a tenth less
// time than in 64 KiB pieces, and reads and writes of the run copy it so. A
// run's pages stay in the map together, full; before any of them is freed,
// the others get arrays of their own, so freeing a page frees its memory.

/** Bytes of one page: the largest allocation, and the unit of `SEEK_DATA`/`SEEK_HOLE` for missing pages. */
export const PAGE_SIZE = 65536;
/** Pages are allocated in multiples of this many bytes (also the unit of `st_blocks`). */
export const GRAIN = 512;
/** Pages of the largest run: 1 MiB, the largest write FUSE sends. */
const RUN_PAGES = 16;
/** V8 refuses a Map of more entries than this. */
export const MAX_MAP_ENTRIES = 2 ** 24;

const NO_PAGES: ReadonlyMap<number, Uint8Array> = new Map();
const roundUp = (n: number): number => (n + GRAIN - 1) & ~(GRAIN - 1);
const pageOf = (pos: number): number => Math.floor(pos / PAGE_SIZE);
/** Whether `page` is a view into a run (any other page is a whole array of its own). */
const inRun = (page: Uint8Array): boolean => page.length !== page.buffer.byteLength;
/** Bytes from the start of `page` to the end of its run, or of itself. */
const reachOf = (page: Uint8Array): number => (page.length < PAGE_SIZE ? page.length : page.buffer.byteLength - page.byteOffset);
/** `length` bytes of the run (or page) of `page`, from `from` bytes past the page's start. */
const viewOf = (page: Uint8Array, from: number, length: number): Uint8Array => new Uint8Array(page.buffer, page.byteOffset + from, length);

/**
 * Pages that files let go of (truncated, punched, outgrown), kept for the
 * next writes of any file of one filesystem, so rewriting a file allocates
 * nothing: a new array costs several times more than clearing one, and each
 * becomes garbage to collect. Pages are kept by length, at most `limit`
 * bytes of them, and count in no file's `allocated`.
 */
export class PagePool {
  readonly #byLength = new Map<number, Uint8Array[]>();
  #bytes = 0;

  constructor(readonly limit: number) {}

  /** Keeps `page` (no longer used by its file) for reuse, if there is room. */
  give(page: Uint8Array): void {
    if (this.#bytes + page.length > this.limit) return;
    let pages = this.#byLength.get(page.length);
    if (pages === undefined) this.#byLength.set(page.length, (pages = []));
    pages.push(page);
    this.#bytes += page.length;
  }

  /** A page of `length` bytes, zeroed unless `dirty` allows old bytes (the caller overwrites all of it). */
  take(length: number, dirty: boolean): Uint8Array {
    const page = this.#byLength.get(length)?.pop();
    if (page === undefined) return new Uint8Array(length);
    this.#bytes -= length;
    if (!dirty) page.fill(0);
    return page;
  }
}

/** The pages of one file. Positions are safe integers; callers clip reads to the file size. */
export class FileData {
  /** Page index → the page's bytes from its start; made on the first allocation (most files are small or empty). */
  #map: Map<number, Uint8Array> | undefined;
  /** Bytes held by all pages: what the file costs in memory. */
  allocated = 0;

  /** `pool` lends whole pages and takes back those freed; none: each page is a new array. */
  constructor(private readonly pool?: PagePool) {}

  get #pages(): ReadonlyMap<number, Uint8Array> {
    return this.#map ?? NO_PAGES;
  }

  /** Copies the bytes at `offset` into all of `out`, holes as zeros. */
  read(offset: number, out: Uint8Array): Uint8Array {
    const length = out.length;
    const pages = this.#pages;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const idx = pageOf(pos);
      const from = pos - idx * PAGE_SIZE;
      const page = pages.get(idx);
      const have = page === undefined ? 0 : Math.min(reachOf(page) - from, length - done);
      if (have > 0) {
        // A whole page goes without a view of it (making one costs more than copying a small page).
        out.set(from === 0 && have === page!.length ? page! : viewOf(page!, from, have), done);
        done += have;
        continue;
      }
      const hole = Math.min(PAGE_SIZE - from, length - done);
      out.fill(0, done, done + hole);
      done += hole;
    }
    return out;
  }

  /**
   * Writes `data` at `offset`, allocating at most `budget` new bytes; returns
   * how many bytes were written, fewer than `data.length` when the budget (or
   * V8's Map limit) ran out.
   */
  write(data: Uint8Array, offset: number, budget: number): number {
    const before = this.allocated;
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const idx = pageOf(pos);
      const from = pos - idx * PAGE_SIZE;
      const left = data.length - done;
      const spare = budget - (this.allocated - before);
      /** The end, in this page, of the bytes to write. */
      const reach = Math.min(PAGE_SIZE, from + left);
      let page = this.#map?.get(idx);
      if (page === undefined && from === 0) page = this.#newRun(idx, left, spare);
      if (page === undefined || page.length < reach) page = this.#reserve(idx, reach, spare, true, from === 0);
      const n = page === undefined ? 0 : Math.min(reachOf(page) - from, left);
      if (n <= 0) break;
      const chunk = n === data.length ? data : data.subarray(done, done + n);
      if (from + n <= page!.length) page!.set(chunk, from);
      else viewOf(page!, from, n).set(chunk);
      done += n;
      // A page shorter than the write reaches: the budget ran out.
      if (from + n < reach) break;
    }
    return done;
  }

  /** New bytes that allocating `[start, end)` would take. */
  allocationNeeded(start: number, end: number): number {
    const first = pageOf(start);
    const last = pageOf(end - 1);
    const lastTarget = roundUp(end - last * PAGE_SIZE);
    let needed = (last - first) * PAGE_SIZE + lastTarget;
    for (const idx of this.#indicesIn(first, last)) {
      needed -= Math.min(this.#pages.get(idx)!.length, idx === last ? lastTarget : PAGE_SIZE);
    }
    return needed;
  }

  /**
   * Allocates `[start, end)` so writing there takes no more memory; all or
   * nothing: false (and nothing allocated) when it needs more than `budget`
   * bytes or more pages than a Map holds.
   */
  allocate(start: number, end: number, budget: number): boolean {
    const first = pageOf(start);
    const last = pageOf(end - 1);
    if (this.allocationNeeded(start, end) > budget) return false;
    if (this.#pages.size + (last - first + 1 - this.#indicesIn(first, last).length) > MAX_MAP_ENTRIES) return false;
    for (let idx = first; idx <= last; idx++) {
      this.#reserve(idx, idx === last ? end - last * PAGE_SIZE : PAGE_SIZE, Infinity, false, false);
    }
    return true;
  }

  /** Zeroes `[start, end)` and frees the pages, and page tails, it covers. */
  punch(start: number, end: number): void {
    for (const idx of this.#indicesIn(pageOf(start), pageOf(end - 1))) {
      let page = this.#map!.get(idx);
      // Freed with its run, at an earlier index.
      if (page === undefined) continue;
      const base = idx * PAGE_SIZE;
      const from = Math.max(start - base, 0);
      const to = Math.min(end - base, PAGE_SIZE);
      if (from >= page.length) continue;
      if (to < page.length) {
        page.fill(0, from, to);
        continue;
      }
      if (inRun(page)) {
        const first = idx - page.byteOffset / PAGE_SIZE;
        const count = page.buffer.byteLength / PAGE_SIZE;
        if (start <= first * PAGE_SIZE && (first + count) * PAGE_SIZE <= end) {
          this.#freeRun(first, count, page);
          continue;
        }
        page = this.#splitRun(first, count, idx);
      }
      const keep = roundUp(from);
      this.allocated -= page.length - keep;
      if (keep === 0) {
        this.#map!.delete(idx);
        this.pool?.give(page);
      } else {
        const shorter = keep < page.length ? page.slice(0, keep) : page;
        shorter.fill(0, from);
        this.#map!.set(idx, shorter);
        if (shorter !== page) this.pool?.give(page);
      }
    }
  }

  /** Zeroes `[start, end)` without freeing anything (`FALLOC_FL_ZERO_RANGE`). */
  zero(start: number, end: number): void {
    for (const idx of this.#indicesIn(pageOf(start), pageOf(end - 1))) {
      const base = idx * PAGE_SIZE;
      this.#pages.get(idx)!.fill(0, Math.max(start - base, 0), Math.min(end - base, PAGE_SIZE));
    }
  }

  /** Frees everything at and past `size` (a shrinking truncate). */
  truncate(size: number): void {
    this.punch(size, Number.MAX_SAFE_INTEGER);
  }

  /** The first position at or after `offset` that holds data, or `Infinity`. */
  nextData(offset: number): number {
    const idx = pageOf(offset);
    const page = this.#pages.get(idx);
    if (page !== undefined && offset - idx * PAGE_SIZE < page.length) return offset;
    let next = Infinity;
    for (const i of this.#pages.keys()) if (i > idx && i < next) next = i;
    return next * PAGE_SIZE;
  }

  /** The first position at or after `offset` that is a hole (the caller clips it to the size). */
  nextHole(offset: number): number {
    let pos = offset;
    for (;;) {
      const idx = pageOf(pos);
      const page = this.#pages.get(idx);
      if (page === undefined || pos - idx * PAGE_SIZE >= page.length) return pos;
      pos = idx * PAGE_SIZE + page.length;
      if (page.length < PAGE_SIZE) return pos;
    }
  }

  /**
   * Copies `count` bytes at `from` into `dest` at `to` (which may be this file
   * at a range that does not overlap), keeping holes holes; allocates at most
   * `budget` new bytes in `dest`. Returns the bytes copied, fewer when the
   * budget ran out.
   */
  copyTo(dest: FileData, from: number, count: number, to: number, budget: number): number {
    const end = from + count;
    const before = dest.allocated;
    let pos = from;
    for (const idx of this.#indicesIn(pageOf(from), pageOf(end - 1))) {
      const page = this.#pages.get(idx)!;
      const base = idx * PAGE_SIZE;
      const dataStart = Math.max(base, from);
      const dataEnd = Math.min(base + page.length, end);
      if (dataStart >= dataEnd) continue;
      if (dataStart > pos) dest.punch(to + (pos - from), to + (dataStart - from));
      const n = dataEnd - dataStart;
      // Within one file, writing may retire this very page to the pool and take it back for
      // another page (zeroed) before the chunk is read: copy the chunk out first.
      const chunk = dest === this ? page.slice(dataStart - base, dataEnd - base) : page.subarray(dataStart - base, dataEnd - base);
      const written = dest.write(chunk, to + (dataStart - from), budget - (dest.allocated - before));
      if (written < n) return dataStart - from + written;
      pos = dataEnd;
    }
    if (pos < end) dest.punch(to + (pos - from), to + count);
    return count;
  }

  /**
   * Allocates, as one run, the missing pages from `idx` that a write of
   * `length` bytes there fills whole, at most RUN_PAGES and within `budget`
   * bytes and the Map limit (the same bytes page by page would take). Returns
   * the run's first page, or nothing when fewer than two pages qualify.
   */
  #newRun(idx: number, length: number, budget: number): Uint8Array | undefined {
    const pages = (this.#map ??= new Map<number, Uint8Array>());
    const most = Math.min(RUN_PAGES, Math.floor(length / PAGE_SIZE), Math.floor(budget / PAGE_SIZE), MAX_MAP_ENTRIES - pages.size);
    let count = 0;
    while (count < most && !pages.has(idx + count)) count++;
    if (count < 2) return undefined;
    // The write overwrites every byte of the run, so old bytes from the pool may stay.
    const run = this.pool?.take(count * PAGE_SIZE, true) ?? new Uint8Array(count * PAGE_SIZE);
    for (let i = 0; i < count; i++) pages.set(idx + i, run.subarray(i * PAGE_SIZE, (i + 1) * PAGE_SIZE));
    this.allocated += run.length;
    return pages.get(idx);
  }

  /** Frees the run of `count` pages from index `first`, of which `page` is one. */
  #freeRun(first: number, count: number, page: Uint8Array): void {
    for (let i = first; i < first + count; i++) this.#map!.delete(i);
    this.allocated -= count * PAGE_SIZE;
    this.pool?.give(new Uint8Array(page.buffer));
  }

  /** Gives each page of the run of `count` pages from index `first` an array of its own; returns the page at `idx`. */
  #splitRun(first: number, count: number, idx: number): Uint8Array {
    const pages = this.#map!;
    for (let i = first; i < first + count; i++) {
      const own = this.pool?.take(PAGE_SIZE, true) ?? new Uint8Array(PAGE_SIZE);
      own.set(pages.get(i)!);
      pages.set(i, own);
    }
    return pages.get(idx)!;
  }

  /**
   * Makes page `idx` at least `need` bytes long within `budget` new bytes
   * (shorter when the budget is smaller; `grow` doubles the page when that
   * fits, so appends copy little). `overwritten`: the caller writes the
   * page's first `need` bytes at once, so a new page of just that length
   * may hold old bytes. Returns the page, if one exists now.
   */
  #reserve(idx: number, need: number, budget: number, grow: boolean, overwritten: boolean): Uint8Array | undefined {
    const pages = (this.#map ??= new Map<number, Uint8Array>());
    const page = pages.get(idx);
    const have = page === undefined ? 0 : page.length;
    if (need <= have) return page;
    if (page === undefined && pages.size >= MAX_MAP_ENTRIES) return undefined;
    const exact = roundUp(need);
    let size = grow ? Math.min(PAGE_SIZE, Math.max(exact, have * 2)) : exact;
    if (size - have > budget) size = exact - have <= budget ? exact : have + Math.floor(budget / GRAIN) * GRAIN;
    if (size <= have) return page;
    const next = this.pool?.take(size, overwritten && page === undefined && need === size) ?? new Uint8Array(size);
    if (page !== undefined) {
      next.set(page);
      this.pool?.give(page);
    }
    pages.set(idx, next);
    this.allocated += size - have;
    return next;
  }

  /** The indices of the existing pages in `[first, last]`, ascending. */
  #indicesIn(first: number, last: number): number[] {
    const pages = this.#pages;
    const found: number[] = [];
    if (last - first < pages.size) {
      for (let idx = first; idx <= last; idx++) if (pages.has(idx)) found.push(idx);
      return found;
    }
    for (const idx of pages.keys()) if (idx >= first && idx <= last) found.push(idx);
    return found.sort((a, b) => a - b);
  }
}
