// Hand-written CommonJS loader for the msb-native Node-API addon.
// (`napi build` only generates a loader for crates using napi-derive; this
// crate uses no crates at all.)
'use strict';

const { join } = require('node:path');
const { existsSync } = require('node:fs');

function platformTriple() {
  const { platform, arch } = process;
  if (platform !== 'linux') return `${platform}-${arch}`;
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
  const header = report && (typeof report === 'string' ? JSON.parse(report) : report).header;
  const libc = header && header.glibcVersionRuntime ? 'gnu' : 'musl';
  return `linux-${arch}-${libc}`;
}

const triple = platformTriple();
const file = join(__dirname, `msb-native.${triple}.node`);
if (!existsSync(file)) {
  throw new Error(
    `@msb/native: native addon not found: ${file} (platform ${triple}; only linux-x64-gnu is supported). ` +
      'Build it with "pnpm --filter @msb/native build" (needs the Rust toolchain).',
  );
}

const binding = require(file);

// One explicit assignment per export so Node's cjs-module-lexer sees the
// names and `import { openat2 } from '@msb/native'` works from ESM.
module.exports.version = binding.version;
module.exports.constants = binding.constants;
module.exports.UTIME_NOW = binding.UTIME_NOW;
module.exports.UTIME_OMIT = binding.UTIME_OMIT;
module.exports.makedev = binding.makedev;
module.exports.tscKhz = binding.tscKhz;
module.exports.tscKhzAsync = binding.tscKhzAsync;
module.exports.major = binding.major;
module.exports.minor = binding.minor;
module.exports.statxInto = binding.statxInto;
/** Where `statxInto` puts each field in its `out` array. */
module.exports.STATX_FIELDS = Object.freeze({
  devMajor: 0, devMinor: 1, inoHigh: 2, inoLow: 3, mode: 4, nlink: 5, uid: 6, gid: 7, rdevMajor: 8, rdevMinor: 9,
  size: 10, blksize: 11, blocks: 12, atimeSec: 13, atimeNsec: 14, mtimeSec: 15, mtimeNsec: 16, ctimeSec: 17, ctimeNsec: 18,
  length: 19,
});

// a passthrough server's lookup, forget and create, one call each
module.exports.pinAt = binding.pinAt;
module.exports.unpin = binding.unpin;
module.exports.createPinned = binding.createPinned;

// zstd streaming decompression (libzstd)
module.exports.zstdDecompressor = binding.zstdDecompressor;
module.exports.zstdDecompress = binding.zstdDecompress;
module.exports.zstdDecompressAsync = binding.zstdDecompressAsync;

// image layer tars unpacked on a thread of their own (libarchive)
module.exports.layerUnpacker = binding.layerUnpacker;
module.exports.layerUnpackerWrite = binding.layerUnpackerWrite;
module.exports.layerUnpackerEnd = binding.layerUnpackerEnd;

// extended attributes
module.exports.getxattr = binding.getxattr;
module.exports.getxattrAsync = binding.getxattrAsync;
module.exports.lgetxattr = binding.lgetxattr;
module.exports.lgetxattrAsync = binding.lgetxattrAsync;
module.exports.fgetxattr = binding.fgetxattr;
module.exports.fgetxattrAsync = binding.fgetxattrAsync;
module.exports.getxattrat = binding.getxattrat;
module.exports.getxattratAsync = binding.getxattratAsync;
module.exports.setxattr = binding.setxattr;
module.exports.setxattrAsync = binding.setxattrAsync;
module.exports.lsetxattr = binding.lsetxattr;
module.exports.lsetxattrAsync = binding.lsetxattrAsync;
module.exports.fsetxattr = binding.fsetxattr;
module.exports.fsetxattrAsync = binding.fsetxattrAsync;
module.exports.listxattr = binding.listxattr;
module.exports.listxattrAsync = binding.listxattrAsync;
module.exports.llistxattr = binding.llistxattr;
module.exports.llistxattrAsync = binding.llistxattrAsync;
module.exports.flistxattr = binding.flistxattr;
module.exports.flistxattrAsync = binding.flistxattrAsync;
module.exports.removexattr = binding.removexattr;
module.exports.removexattrAsync = binding.removexattrAsync;
module.exports.lremovexattr = binding.lremovexattr;
module.exports.lremovexattrAsync = binding.lremovexattrAsync;
module.exports.fremovexattr = binding.fremovexattr;
module.exports.fremovexattrAsync = binding.fremovexattrAsync;

// open / close
module.exports.openat2 = binding.openat2;
module.exports.openat2Async = binding.openat2Async;
module.exports.openat = binding.openat;
module.exports.openatAsync = binding.openatAsync;
module.exports.close = binding.close;
module.exports.closeAsync = binding.closeAsync;

// *at family
module.exports.mkdirat = binding.mkdirat;
module.exports.mkdiratAsync = binding.mkdiratAsync;
module.exports.mknodat = binding.mknodat;
module.exports.mknodatAsync = binding.mknodatAsync;
module.exports.symlinkat = binding.symlinkat;
module.exports.symlinkatAsync = binding.symlinkatAsync;
module.exports.linkat = binding.linkat;
module.exports.linkatAsync = binding.linkatAsync;
module.exports.unlinkat = binding.unlinkat;
module.exports.unlinkatAsync = binding.unlinkatAsync;
module.exports.renameat2 = binding.renameat2;
module.exports.renameat2Async = binding.renameat2Async;
module.exports.fchownat = binding.fchownat;
module.exports.fchownatAsync = binding.fchownatAsync;
module.exports.fchmodat = binding.fchmodat;
module.exports.fchmodatAsync = binding.fchmodatAsync;
module.exports.utimensat = binding.utimensat;
module.exports.utimensatAsync = binding.utimensatAsync;
module.exports.readlinkat = binding.readlinkat;
module.exports.readlinkatAsync = binding.readlinkatAsync;
module.exports.faccessat = binding.faccessat;
module.exports.faccessatAsync = binding.faccessatAsync;

// stat
module.exports.fstatat = binding.fstatat;
module.exports.fstatatAsync = binding.fstatatAsync;
module.exports.fstat = binding.fstat;
module.exports.fstatAsync = binding.fstatAsync;
module.exports.statfs = binding.statfs;
module.exports.statfsAsync = binding.statfsAsync;
module.exports.fstatfs = binding.fstatfs;
module.exports.fstatfsAsync = binding.fstatfsAsync;

// directories
module.exports.getdentsRaw = binding.getdentsRaw;
module.exports.getdentsRawAsync = binding.getdentsRawAsync;

/**
 * Parses `linux_dirent64` records (u64 d_ino, s64 d_off, u16 d_reclen,
 * u8 d_type, NUL-terminated name), stopping at a malformed record. Names are
 * views into `records`.
 */
function parseDirents(records) {
  const view = new DataView(records.buffer, records.byteOffset, records.byteLength);
  const out = [];
  let pos = 0;
  while (pos + 19 <= records.length) {
    const reclen = view.getUint16(pos + 16, true);
    if (reclen < 19 || pos + reclen > records.length) break;
    const limit = pos + reclen;
    let end = pos + 19;
    while (end < limit && records[end] !== 0) end++;
    out.push({
      ino: view.getBigUint64(pos, true),
      off: view.getBigInt64(pos + 8, true),
      type: records[pos + 18],
      name: records.subarray(pos + 19, end),
    });
    pos = limit;
  }
  return out;
}
module.exports.parseDirents = parseDirents;
module.exports.getdents = (fd, bufferSize) => parseDirents(binding.getdentsRaw(fd, bufferSize));
module.exports.getdentsAsync = async (fd, bufferSize) => parseDirents(await binding.getdentsRawAsync(fd, bufferSize));

// file data
module.exports.fallocate = binding.fallocate;
module.exports.fallocateAsync = binding.fallocateAsync;
module.exports.copyFileRange = binding.copyFileRange;
module.exports.copyFileRangeAsync = binding.copyFileRangeAsync;
module.exports.lseek = binding.lseek;
module.exports.lseekAsync = binding.lseekAsync;
module.exports.fuseDevClone = binding.fuseDevClone;
module.exports.fuseDevCloneAsync = binding.fuseDevCloneAsync;

// mounts
module.exports.mount = binding.mount;
module.exports.mountAsync = binding.mountAsync;
module.exports.umount2 = binding.umount2;
module.exports.umount2Async = binding.umount2Async;

// readiness polling on Node's event loop (FUSE requests served on the JS thread)
module.exports.pollReadable = binding.pollReadable;
module.exports.pollUnref = binding.pollUnref;
module.exports.pollClose = binding.pollClose;
module.exports.readNonBlocking = binding.readNonBlocking;

// FUSE passthrough backing files
module.exports.fuseBackingOpen = binding.fuseBackingOpen;
module.exports.fuseBackingOpenAsync = binding.fuseBackingOpenAsync;
module.exports.fuseBackingClose = binding.fuseBackingClose;
module.exports.fuseBackingCloseAsync = binding.fuseBackingCloseAsync;
