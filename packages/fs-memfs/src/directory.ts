// The entries of one directory, by name and in insertion order. Each entry
// gets a sequence number when it is added, never reused in this directory,
// and readdir cookies are those numbers: resuming at "the first entry with a
// larger number" stays correct whatever was added or removed in between, and
// no entry comes twice in one pass.

/** Cookies 1 and 2 are `.` and `..`; entries count from here. */
export const FIRST_SEQ = 3;

/** One name in a directory. */
export interface Slot {
  /** The name, one char per byte (`bytesKey`): the map key, and the only copy of the name kept. */
  readonly key: string;
  /** The inode the name points at; changed in place by `RENAME_EXCHANGE`. */
  ino: number;
  /** The readdir cookie of this entry. */
  readonly seq: number;
  /** False once removed; removed slots wait in `order` until compaction. */
  live: boolean;
}

export class Directory {
  readonly #byKey = new Map<string, Slot>();
  /** Slots by ascending `seq`, removed ones included until compaction. */
  #order: Slot[] = [];
  #removed = 0;
  #nextSeq = FIRST_SEQ;

  /** Live entries. */
  get size(): number {
    return this.#byKey.size;
  }

  get(key: string): Slot | undefined {
    return this.#byKey.get(key);
  }

  /** Adds a name (the caller checked that `key` is free). */
  add(key: string, ino: number): Slot {
    const slot: Slot = { key, ino, seq: this.#nextSeq++, live: true };
    this.#byKey.set(key, slot);
    this.#order.push(slot);
    return slot;
  }

  remove(slot: Slot): void {
    this.#byKey.delete(slot.key);
    slot.live = false;
    // Compact once half the order is dead: amortised O(1) per removal.
    if (++this.#removed > 16 && this.#removed * 2 > this.#order.length) {
      this.#order = this.#order.filter((s) => s.live);
      this.#removed = 0;
    }
  }

  /** The index in the order of the first slot whose cookie is above `cookie`. */
  #after(cookie: number): number {
    let lo = 0;
    let hi = this.#order.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#order[mid]!.seq <= cookie) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /**
   * Calls `take` for live entries after `cookie`, in order, until it returns
   * false.
   */
  forEachAfter(cookie: number, take: (slot: Slot) => boolean): void {
    const order = this.#order;
    for (let i = this.#after(cookie); i < order.length; i++) {
      const slot = order[i]!;
      if (slot.live && !take(slot)) return;
    }
  }
}
