// Test helpers: tar streams built with tar-stream, plus raw GNU blocks it cannot write.
import { execFileSync } from "node:child_process";
import { pack, type Header } from "tar-stream";

/** One entry for {@link buildTar}. */
export interface TarEntry {
  readonly header: Partial<Header> & Pick<Header, "name"> & { pax?: Record<string, string> };
  readonly data?: string | Buffer;
}

/** A tar archive of `entries`, as tar-stream writes it (ustar, PAX where needed). */
export async function buildTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of p as AsyncIterable<Buffer>) chunks.push(chunk);
  })();
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const data = entry.data === undefined ? Buffer.alloc(0) : Buffer.from(entry.data);
      p.entry({ mode: 0o644, uid: 0, gid: 0, mtime: new Date(1_700_000_000_000), ...entry.header, size: data.length }, data, (error) => (error ? reject(error) : resolve()));
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

function octal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length, "latin1");
}

/** One raw header block, GNU format (magic `ustar  `) unless `ustar` (POSIX magic `ustar\000`), checksum included. */
export function gnuHeader(name: string | Buffer, type: string, size: number, linkname = "", ustar = false): Buffer {
  const block = Buffer.alloc(512);
  Buffer.from(name).copy(block, 0, 0, 100);
  octal(block, 100, 8, 0o644);
  octal(block, 108, 8, 0);
  octal(block, 116, 8, 0);
  octal(block, 124, 12, size);
  octal(block, 136, 12, 1_700_000_000);
  block.write(type, 156, 1, "latin1");
  block.write(linkname, 157, 100, "latin1");
  block.write(ustar ? "ustar\u000000" : "ustar  \0", 257, 8, "latin1");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "latin1");
  return block;
}

/** `data` padded to whole 512-byte blocks. */
export function blocks(data: Buffer): Buffer {
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

/** A GNU tar with a long-name ('L') file and a long-link ('K') symlink, then the end blocks. */
export function gnuLongNamesTar(longName: string, content: string, longLinkName: string, longLinkTarget: string): Buffer {
  const name = Buffer.from(`${longName}\0`);
  const link = Buffer.from(`${longLinkTarget}\0`);
  const linkName = Buffer.from(`${longLinkName}\0`);
  return Buffer.concat([
    gnuHeader("././@LongLink", "L", name.length),
    blocks(name),
    gnuHeader(longName.slice(0, 99), "0", content.length),
    blocks(Buffer.from(content)),
    gnuHeader("././@LongLink", "L", linkName.length),
    blocks(linkName),
    gnuHeader("././@LongLink", "K", link.length),
    blocks(link),
    gnuHeader(longLinkName.slice(0, 99), "2", 0, longLinkTarget.slice(0, 99)),
    Buffer.alloc(1024),
  ]);
}

/** One PAX record, "LEN key=value\n", its value raw bytes. */
export function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from("\n")]);
  // LEN counts its own digits too.
  let length = body.length + 1;
  while (String(length).length + body.length !== length) length++;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

/** A POSIX tar of one file `name` with `data`, preceded by a PAX header of `records` (raw, as {@link paxRecord} builds them). */
export function paxFileTar(name: string, data: string, records: readonly Buffer[]): Buffer {
  const pax = Buffer.concat(records);
  return Buffer.concat([
    gnuHeader("PaxHeaders/x", "x", pax.length, "", true),
    blocks(pax),
    gnuHeader(name, "0", data.length, "", true),
    blocks(Buffer.from(data)),
    Buffer.alloc(1024),
  ]);
}

/** `data` compressed by the zstd CLI, or undefined (with a warning naming `what`) when the CLI is missing. */
export function zstdCli(data: Buffer, what: string): Buffer | undefined {
  try {
    return execFileSync("zstd", ["-q", "-c"], { input: data });
  } catch {
    console.warn(`zstd CLI missing (the testbed's install.sh installs it): ${what} not tested`);
    return undefined;
  }
}
