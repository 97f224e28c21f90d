// A child process of the stress tests: seeded random pwrite / pread /
// ftruncate / reopen / fsync on files of a mounted directory, every read
// checked against an in-memory model of the file. Prints one JSON line per
// file (its name, size and sha256 as the model has it) so the parent can
// check what other processes see; exits 1 at the first mismatch, naming the
// seed and the operation.
//   usage: random-io.fixture.ts DIR SEED OPS FILES
import { createHash } from "node:crypto";
import { closeSync, constants, fstatSync, fsyncSync, ftruncateSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";

const [dir, seedText, opsText, filesText] = process.argv.slice(2);
if (dir === undefined || seedText === undefined || opsText === undefined || filesText === undefined) {
  throw new Error("usage: random-io.fixture.ts DIR SEED OPS FILES");
}
const seed = Number(seedText);
const ops = Number(opsText);

/** mulberry32: small, seedable, good enough to pick operations. */
function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
const random = prng(seed);
const below = (n: number): number => Math.floor(random() * n);
/** Mostly small sizes, sometimes large ones: both paths of the page cache get used. */
const size = (): number => (random() < 0.7 ? 1 + below(4096) : 1 + below(160 << 10));
const SPAN = 512 << 10;

class Model {
  bytes = new Uint8Array(0);
  write(offset: number, data: Uint8Array): void {
    const end = offset + data.length;
    if (end > this.bytes.length) this.resize(end);
    this.bytes.set(data, offset);
  }
  resize(length: number): void {
    const next = new Uint8Array(length);
    next.set(this.bytes.subarray(0, Math.min(length, this.bytes.length)));
    this.bytes = next;
  }
}

interface Tracked {
  readonly name: string;
  readonly model: Model;
  fd: number;
}

const files: Tracked[] = Array.from({ length: Number(filesText) }, (_, i) => {
  const name = join(dir, `rand-${seed}-${i}`);
  return { name, model: new Model(), fd: openSync(name, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644) };
});

let step = 0;
function fail(what: string): never {
  process.stderr.write(`seed ${seed}, op ${step}: ${what}\n`);
  process.exit(1);
}

function check(file: Tracked, offset: number, length: number, what: string): void {
  const got = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(file.fd, got, done, length - done, offset + done);
    if (n === 0) break;
    done += n;
  }
  const want = file.model.bytes.subarray(offset, Math.min(offset + length, file.model.bytes.length));
  if (done !== want.length) fail(`${what} ${file.name} [${offset}, +${length}): read ${done} bytes, model has ${want.length}`);
  if (Buffer.compare(got.subarray(0, done), want) !== 0) fail(`${what} ${file.name} [${offset}, +${length}): content differs from the model`);
}

for (step = 0; step < ops; step++) {
  const file = files[below(files.length)]!;
  const dice = random();
  if (dice < 0.4) {
    const data = new Uint8Array(size()).map(() => below(256));
    const offset = below(SPAN);
    if (writeSync(file.fd, data, 0, data.length, offset) !== data.length) fail(`short write to ${file.name}`);
    file.model.write(offset, data);
  } else if (dice < 0.8) {
    check(file, below(SPAN), size(), "read");
  } else if (dice < 0.9) {
    const length = below(SPAN);
    ftruncateSync(file.fd, length);
    file.model.resize(length);
  } else if (dice < 0.95) {
    closeSync(file.fd);
    const truncate = random() < 0.2;
    file.fd = openSync(file.name, constants.O_RDWR | (truncate ? constants.O_TRUNC : 0));
    if (truncate) file.model.resize(0);
  } else {
    fsyncSync(file.fd);
  }
  if (fstatSync(file.fd).size !== file.model.bytes.length) fail(`${file.name} has size ${fstatSync(file.fd).size}, model ${file.model.bytes.length}`);
}

for (const file of files) {
  check(file, 0, file.model.bytes.length + 4096, "final read");
  closeSync(file.fd);
  const sha256 = createHash("sha256").update(file.model.bytes).digest("hex");
  process.stdout.write(`${JSON.stringify({ name: file.name, size: file.model.bytes.length, sha256 })}\n`);
}
