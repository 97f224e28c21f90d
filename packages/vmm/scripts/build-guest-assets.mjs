#!/usr/bin/env node
// Builds msb's guest assets from Debian packages and the agent binary:
//
//   vmlinux          uncompressed kernel of Debian's linux-image-cloud-amd64 (microvm boots it via PVH)
//   initramfs.cpio   /init = the agent, the kernel modules it loads, their load order
//   busybox-oci/     the built-in image, an OCI image layout made from Debian's busybox-static
//   manifest.json    what @msb/vmm's findGuestAssets() reads, with the asset version
//
// Usage: node packages/vmm/scripts/build-guest-assets.mjs --agent PATH [--out DIR]
//
// Nothing is installed on the host: the kernel package is downloaded and
// unpacked under ${XDG_CACHE_HOME:-~/.cache}/msb-build/kernel/, reused on
// re-runs. Every output is deterministic (fixed mtimes, sorted entries, uid/gid
// 0), built in memory, and written to a temp directory renamed into place; an
// output already holding the same asset version is left untouched.
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { homedir } from "node:os";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { gunzipSync, gzipSync } from "node:zlib";

/** The metapackage that names Debian's current cloud kernel (virtio, no hardware drivers). */
const KERNEL_METAPACKAGE = "linux-image-cloud-amd64";

/**
 * Kernel modules the guest needs, whichever are not built in (their
 * dependencies are added and ordered from each module's own .modinfo):
 * virtio transport and rings, virtio-mmio (microvm's bus), virtio_console
 * (the agent's ports), fuse (every guest filesystem), overlay and virtio_blk
 * (kept for later use).
 */
const WANTED_MODULES = ["virtio", "virtio_ring", "virtio_mmio", "virtio_console", "fuse", "overlay", "virtio_blk"];

/**
 * Filesystems a disk volume may carry, with the modules each needs. They are
 * not loaded at boot: the agent loads `lib/modules/order.<fstype>` when a
 * sandbox attaches such a disk, so sandboxes without disks pay nothing.
 * xfs and btrfs would add 9 MB of modules to every guest's initramfs (and its
 * memory); they stay out until someone needs them.
 */
const DISK_FILESYSTEMS = { ext4: ["ext4"], vfat: ["vfat", "nls_cp437", "nls_iso8859_1"] };

/**
 * Measured on QEMU 7.2 TCG: indirect_target_selection=off drops the return
 * thunks that Debian's 6.1 still patches in under mitigations=off (about 10%
 * of guest CPU); init_on_alloc=0 stops zeroing every page the kernel
 * allocates (7% of a FUSE read), a hardening against kernel bugs that leak
 * memory between the guest's own processes, which the VM boundary does not
 * depend on; the TSC rate (tsc_early_khz) is not here: @msb/vmm adds the
 * host's, measured, at boot (without one about 1 boot in 5 hangs
 * calibrating the TSC under TCG); tsc=reliable keeps the TSC as the clock
 * (under TCG it is the host's TSC, but the clocksource watchdog compares it
 * with jiffies, which lag there, and fell back to jiffies: a 4 ms clock);
 * lsm= and audit=0 leave out AppArmor, TOMOYO and the audit hooks, which
 * have no policy in a guest (the VM is the boundary) but cost every system
 * call, and which TCG translates anew in every VM restored from a saved
 * state; the i8042/8250 options skip probing hardware microvm does not have;
 * panic=-1 turns a guest panic into an exit.
 */
const KERNEL_CMDLINE =
  "console=ttyS0 quiet loglevel=0 mitigations=off indirect_target_selection=off init_on_alloc=0 tsc=reliable lsm=capability,landlock,yama audit=0 i8042.noaux i8042.nokbd i8042.nopnp 8250.nr_uarts=1 cryptomgr.notests random.trust_cpu=on nokaslr panic=-1";

const BUSYBOX_PACKAGE = "busybox-static";
const BUSYBOX_ENV = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"];

const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;

class BuildError extends Error {
  name = "BuildError";
}

const started = performance.now();
function log(message) {
  process.stderr.write(`guest-assets: [${((performance.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Runs a tool, returning stdout; a failure names the command and carries its stderr. */
function run(command, args, options = {}) {
  const result = spawnSync(command, args, { maxBuffer: 1 << 30, ...options });
  if (result.error !== undefined) throw new BuildError(`${command} could not run (is its apt package installed? see scripts/apt-packages.txt)`, { cause: result.error });
  if (result.status !== 0) {
    const stderr = Buffer.from(result.stderr ?? "").toString().trim();
    throw new BuildError(`${command} ${args.join(" ")} failed with status ${result.status}${stderr === "" ? "" : `: ${stderr}`}`);
  }
  return result.stdout;
}

// --- apt --------------------------------------------------------------------------

let aptListsRefreshed = false;

/** Runs an apt query/download; on failure refreshes the package lists once (a fresh machine has none) and retries. */
function withAptLists(what, fn) {
  try {
    return fn();
  } catch (error) {
    if (aptListsRefreshed) throw error;
    log(`${what} failed; running apt-get update (the package lists may be missing) and retrying`);
    run("apt-get", ["update", "-qq"], { stdio: ["ignore", "ignore", "pipe"] });
    aptListsRefreshed = true;
    return fn();
  }
}

/** The concrete kernel package the metapackage depends on, and its candidate version. */
function resolveKernelPackage() {
  return withAptLists(`resolving ${KERNEL_METAPACKAGE}`, () => {
    const depends = run("apt-cache", ["depends", KERNEL_METAPACKAGE]).toString();
    const match = /^\s*Depends:\s*(linux-image-\S+)\s*$/m.exec(depends);
    if (match === null) throw new BuildError(`apt-cache depends ${KERNEL_METAPACKAGE} names no linux-image package:\n${depends}`);
    const name = match[1];
    const version = run("apt-cache", ["show", "--no-all-versions", name]).toString().match(/^Version:\s*(\S+)$/m)?.[1];
    if (version === undefined) throw new BuildError(`apt-cache show ${name} gives no Version`);
    return { name, version };
  });
}

/** Downloads `name=version` with `apt-get download` into `dir`, returning the .deb's path. */
function aptDownload(name, version, dir) {
  withAptLists(`downloading ${name} ${version}`, () => run("apt-get", ["download", "-q", `${name}=${version}`], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] }));
  return dir;
}

// --- ELF ------------------------------------------------------------------------

const PT_INTERP = 3;
const PT_NOTE = 4;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

/** Checks the ELF identification of a little-endian x86-64 ELF64 file; `what` names it in errors. */
function checkElf64(bytes, what) {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46) throw new BuildError(`${what} is not an ELF file`);
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new BuildError(`${what} is not a little-endian ELF64 file`);
  if (bytes.readUInt16LE(18) !== 62) throw new BuildError(`${what} is not an x86-64 ELF file (e_machine ${bytes.readUInt16LE(18)})`);
}

/** Program headers of an ELF64 file: type, offset and size in the file. */
function programHeaders(bytes) {
  const phoff = Number(bytes.readBigUInt64LE(32));
  const phentsize = bytes.readUInt16LE(54);
  const phnum = bytes.readUInt16LE(56);
  const headers = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    headers.push({ type: bytes.readUInt32LE(at), offset: Number(bytes.readBigUInt64LE(at + 8)), size: Number(bytes.readBigUInt64LE(at + 32)) });
  }
  return headers;
}

/** A section of an ELF64 file by name, or undefined. */
function elfSection(bytes, wanted) {
  const shoff = Number(bytes.readBigUInt64LE(40));
  const shentsize = bytes.readUInt16LE(58);
  const shnum = bytes.readUInt16LE(60);
  const shstrndx = bytes.readUInt16LE(62);
  const header = (i) => {
    const at = shoff + i * shentsize;
    return { name: bytes.readUInt32LE(at), offset: Number(bytes.readBigUInt64LE(at + 24)), size: Number(bytes.readBigUInt64LE(at + 32)) };
  };
  const names = header(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const section = header(i);
    const start = names.offset + section.name;
    const name = bytes.toString("latin1", start, bytes.indexOf(0, start));
    if (name === wanted) return bytes.subarray(section.offset, section.offset + section.size);
  }
  return undefined;
}

/** A static x86-64 executable: PID 1 of the initramfs and busybox run with no libc around. */
function checkStaticExecutable(bytes, what) {
  checkElf64(bytes, what);
  if (programHeaders(bytes).some((h) => h.type === PT_INTERP)) throw new BuildError(`${what} is dynamically linked; the guest has no libc (build it with -C target-feature=+crt-static)`);
}

/** True when the kernel has a PVH entry point, the only way microvm (without option ROMs) enters a kernel. */
function hasPvhEntry(vmlinux) {
  for (const header of programHeaders(vmlinux)) {
    if (header.type !== PT_NOTE) continue;
    for (let at = header.offset; at + 12 <= header.offset + header.size; ) {
      const namesz = vmlinux.readUInt32LE(at);
      const descsz = vmlinux.readUInt32LE(at + 4);
      const type = vmlinux.readUInt32LE(at + 8);
      const name = vmlinux.toString("latin1", at + 12, at + 12 + namesz);
      if (name === "Xen\0" && type === XEN_ELFNOTE_PHYS32_ENTRY) return true;
      at += 12 + Math.ceil(namesz / 4) * 4 + Math.ceil(descsz / 4) * 4;
    }
  }
  return false;
}

// --- kernel -----------------------------------------------------------------------

/** Kernel payload compressions by magic, with how to decompress each. */
const PAYLOAD_FORMATS = [
  { name: "gzip", magic: [0x1f, 0x8b], decompress: (data) => gunzipSync(data) },
  { name: "xz", magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], decompress: (data) => run("xz", ["-dc"], { input: data }) },
  { name: "zstd", magic: [0x28, 0xb5, 0x2f, 0xfd], decompress: (data) => run("zstd", ["-dc"], { input: data }) },
  { name: "lz4", magic: [0x02, 0x21, 0x4c, 0x18], decompress: (data) => run("lz4", ["-dc"], { input: data }) },
];

/**
 * The uncompressed vmlinux inside a bzImage, found through the x86 boot
 * protocol header (Documentation/arch/x86/boot.rst): the protected-mode code
 * starts after (setup_sects + 1) sectors and holds the compressed payload at
 * payload_offset, payload_length bytes long (protocol >= 2.08).
 */
function extractVmlinux(bzImage, what) {
  if (bzImage.length < 0x250 || bzImage.toString("latin1", 0x202, 0x206) !== "HdrS") throw new BuildError(`${what} is not a bzImage (no "HdrS" boot header)`);
  const protocol = bzImage.readUInt16LE(0x206);
  if (protocol < 0x208) throw new BuildError(`${what} uses boot protocol ${protocol.toString(16)}, which has no payload fields (need >= 2.08)`);
  const setupSects = bzImage[0x1f1] === 0 ? 4 : bzImage[0x1f1]; // 0 means 4, for old bootloaders' sake
  const protectedMode = (setupSects + 1) * 512;
  const payloadOffset = bzImage.readUInt32LE(0x248);
  const payloadLength = bzImage.readUInt32LE(0x24c);
  const start = protectedMode + payloadOffset;
  if (payloadLength < 4 || start + payloadLength > bzImage.length) throw new BuildError(`${what}: payload ${start}+${payloadLength} lies outside the ${bzImage.length}-byte file`);
  const payload = bzImage.subarray(start, start + payloadLength);
  const format = PAYLOAD_FORMATS.find((f) => f.magic.every((byte, i) => payload[i] === byte));
  if (format === undefined) throw new BuildError(`${what}: unsupported payload compression (magic ${payload.subarray(0, 6).toString("hex")})`);
  // The payload's last 4 bytes are the uncompressed size: gzip's own ISIZE
  // trailer, or what the kernel build appends after every other format (size_append).
  const expectedSize = payload.readUInt32LE(payloadLength - 4);
  const vmlinux = format.decompress(format.name === "gzip" ? payload : payload.subarray(0, payloadLength - 4));
  if (vmlinux.length % 2 ** 32 !== expectedSize) throw new BuildError(`${what}: ${format.name} payload decompressed to ${vmlinux.length} bytes, header says ${expectedSize}`);
  checkElf64(vmlinux, `${what}'s decompressed payload`);
  if (!hasPvhEntry(vmlinux)) throw new BuildError(`${what} has no PVH entry note (CONFIG_PVH); QEMU's microvm cannot boot it`);
  return { vmlinux, compression: format.name };
}

/**
 * The kernel package unpacked in the cache, with its vmlinux extracted once:
 * `<cache>/<name>_<version>/{root/,vmlinux}`, renamed into place complete.
 * Other versions and stale temps left by earlier runs are removed.
 */
async function cachedKernel(cacheDir) {
  const { name, version } = resolveKernelPackage();
  const key = `${name}_${version.replaceAll(":", "%3a")}`;
  const dir = join(cacheDir, key);
  await mkdir(cacheDir, { recursive: true });
  if (existsSync(dir)) {
    log(`kernel ${name} ${version}: cached in ${dir}`);
  } else {
    const temp = await mkdtemp(join(cacheDir, ".tmp-"));
    try {
      log(`kernel ${name} ${version}: downloading`);
      const download = join(temp, "download");
      await mkdir(download);
      aptDownload(name, version, download);
      const debs = (await readdir(download)).filter((file) => file.endsWith(".deb"));
      if (debs.length !== 1) throw new BuildError(`apt-get download ${name}=${version} left ${debs.length} .deb files`);
      run("dpkg-deb", ["-x", join(download, debs[0]), join(temp, "root")]);
      await rm(download, { recursive: true });
      const bzImages = (await readdir(join(temp, "root", "boot"))).filter((file) => file.startsWith("vmlinuz-"));
      if (bzImages.length !== 1) throw new BuildError(`${name} ships ${bzImages.length} /boot/vmlinuz-* files, expected 1`);
      const { vmlinux, compression } = extractVmlinux(await readFile(join(temp, "root", "boot", bzImages[0])), bzImages[0]);
      log(`kernel: extracted ${vmlinux.length}-byte vmlinux from its ${compression} payload`);
      await writeFile(join(temp, "vmlinux"), vmlinux);
      await rename(temp, dir);
    } catch (error) {
      await rm(temp, { recursive: true, force: true });
      throw error;
    }
  }
  for (const entry of await readdir(cacheDir)) {
    // An hour-old temp is a killed run's leftover; a younger one may be another run's work in progress.
    const stale = entry.startsWith(".tmp-") && Date.now() - (await stat(join(cacheDir, entry))).mtimeMs > 3_600_000;
    if (stale || (entry !== key && entry.startsWith("linux-image-"))) await rm(join(cacheDir, entry), { recursive: true, force: true });
  }
  const releases = await readdir(join(dir, "root", "lib", "modules"));
  if (releases.length !== 1) throw new BuildError(`${name} ships ${releases.length} /lib/modules/* directories, expected 1`);
  return { packageName: name, packageVersion: version, release: releases[0], vmlinux: join(dir, "vmlinux"), modulesDir: join(dir, "root", "lib", "modules", releases[0]) };
}

// --- modules ------------------------------------------------------------------------

const MODULE_SUFFIXES = [
  { suffix: ".ko", read: (bytes) => bytes },
  { suffix: ".ko.xz", read: (bytes) => run("xz", ["-dc"], { input: bytes }) },
  { suffix: ".ko.zst", read: (bytes) => run("zstd", ["-dc"], { input: bytes }) },
];

/** Module name as the kernel spells it (file names may use '-', module names always '_'). */
function moduleName(file) {
  for (const { suffix } of MODULE_SUFFIXES) if (file.endsWith(suffix)) return basename(file, suffix).replaceAll("-", "_");
  return undefined;
}

async function moduleFiles(dir, found = new Map()) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await moduleFiles(path, found);
    else if (moduleName(entry.name) !== undefined) found.set(moduleName(entry.name), path);
  }
  return found;
}

/** The `depends=` of a module's .modinfo section (no modules.dep: depmod runs only on install). */
function moduleDepends(ko, name) {
  checkElf64(ko, `module ${name}`);
  const modinfo = elfSection(ko, ".modinfo");
  if (modinfo === undefined) throw new BuildError(`module ${name} has no .modinfo section`);
  const fields = modinfo.toString("latin1").split("\0");
  const depends = fields.find((field) => field.startsWith("depends="))?.slice("depends=".length) ?? "";
  return depends === "" ? [] : depends.split(",");
}

/**
 * The modules to load, dependencies first, as uncompressed .ko bytes. Wanted
 * modules built into the kernel are skipped; one neither built in nor shipped
 * is an error (the kernel's config changed under us).
 */
async function resolveModules(modulesDir, wanted = WANTED_MODULES, loaded = new Set()) {
  const builtin = new Set(
    readFileSync(join(modulesDir, "modules.builtin"), "utf8")
      .split("\n")
      .map((line) => moduleName(line.trim()))
      .filter((name) => name !== undefined),
  );
  const files = await moduleFiles(join(modulesDir, "kernel"));
  const ordered = [];
  const visiting = new Set();
  const visit = async (name, wantedBy) => {
    if (builtin.has(name) || loaded.has(name) || ordered.some((m) => m.name === name)) return;
    if (visiting.has(name)) throw new BuildError(`module dependency cycle through ${name}`);
    const path = files.get(name);
    if (path === undefined) throw new BuildError(`module ${name}${wantedBy === undefined ? "" : ` (needed by ${wantedBy})`} is neither built into the kernel nor shipped with it`);
    visiting.add(name);
    const suffix = MODULE_SUFFIXES.find((s) => path.endsWith(s.suffix));
    const ko = suffix.read(await readFile(path));
    for (const dependency of moduleDepends(ko, name)) await visit(dependency, name);
    visiting.delete(name);
    ordered.push({ name, ko });
  };
  for (const name of wanted) await visit(name, undefined);
  return { modules: ordered, builtin: wanted.filter((name) => builtin.has(name)) };
}

// --- cpio (newc) ------------------------------------------------------------------------

function pad(length, alignment) {
  return Buffer.alloc((alignment - (length % alignment)) % alignment);
}

/**
 * A newc cpio archive of `entries` ({ path, mode (type and permissions), data?, rdev? }),
 * sorted by path so parents come first, with inode numbers by position,
 * mtime 0 and owner root: the same inputs always give the same bytes.
 */
function cpioArchive(entries) {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts = [];
  const record = (ino, { path, mode, data = Buffer.alloc(0), rdev = [0, 0] }) => {
    const name = Buffer.from(`${path}\0`);
    const fields = [ino, mode, 0, 0, (mode & S_IFDIR) === S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdev[0], rdev[1], name.length, 0];
    const header = Buffer.from(`070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}`, "latin1");
    parts.push(header, name, pad(header.length + name.length, 4), data, pad(data.length, 4));
  };
  sorted.forEach((entry, i) => record(i + 1, entry));
  record(0, { path: "TRAILER!!!", mode: 0 });
  return Buffer.concat(parts);
}

function buildInitramfs(agent, modules, diskModules) {
  const shipped = new Map([...modules, ...Object.values(diskModules).flat()].map((m) => [m.name, m.ko]));
  const dir = (path, permissions = 0o755) => ({ path, mode: S_IFDIR | permissions });
  return cpioArchive([
    { path: "init", mode: S_IFREG | 0o755, data: agent },
    // The kernel opens /dev/console for PID 1's stdio before init runs; ship the node rather than rely on the kernel's built-in list.
    { path: "dev/console", mode: S_IFCHR | 0o600, rdev: [5, 1] },
    ...["dev", "lib", "lib/modules", "newroot", "proc", "sys"].map((path) => dir(path)),
    dir("tmp", 0o1777),
    ...[...shipped].map(([name, ko]) => ({ path: `lib/modules/${name}.ko`, mode: S_IFREG | 0o644, data: ko })),
    { path: "lib/modules/order", mode: S_IFREG | 0o644, data: Buffer.from(modules.map(({ name }) => `${name}\n`).join("")) },
    ...Object.entries(diskModules).map(([fstype, list]) => ({ path: `lib/modules/order.${fstype}`, mode: S_IFREG | 0o644, data: Buffer.from(list.map(({ name }) => `${name}\n`).join("")) })),
  ]);
}

// --- tar (ustar) + OCI layout --------------------------------------------------------------

function ustarHeader({ path, mode, type, size = 0, linkname = "" }) {
  const block = Buffer.alloc(512);
  const field = (value, offset, length) => {
    const bytes = Buffer.from(value, "utf8");
    if (bytes.length > length) throw new BuildError(`tar field "${value}" is longer than ${length} bytes`);
    bytes.copy(block, offset);
  };
  const octal = (value, offset, length) => field(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length);
  field(path, 0, 100);
  octal(mode, 100, 8);
  octal(0, 108, 8); // uid
  octal(0, 116, 8); // gid
  octal(size, 124, 12);
  octal(0, 136, 12); // mtime
  field(type, 156, 1);
  field(linkname, 157, 100);
  field("ustar\u000000", 257, 8);
  field("root", 265, 32);
  field("root", 297, 32);
  block.fill(0x20, 148, 156); // the checksum is computed with its own field as spaces
  let sum = 0;
  for (const byte of block) sum += byte;
  field(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
  return block;
}

/** A ustar archive of `entries` ({ path, mode, type "0"|"2"|"5", data?, linkname? }), sorted, mtime 0, owner root. */
function tarArchive(entries) {
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const parts = [];
  for (const entry of sorted) {
    const data = entry.data ?? Buffer.alloc(0);
    parts.push(ustarHeader({ ...entry, path: entry.type === "5" ? `${entry.path}/` : entry.path, size: data.length }), data, pad(data.length, 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** The installed busybox-static: its static binary and version. */
function installedBusybox() {
  const status = spawnSync("dpkg-query", ["-W", "-f", "${Status}\t${Version}", BUSYBOX_PACKAGE], { encoding: "utf8" });
  const [state, version] = (status.stdout ?? "").split("\t");
  if (status.status !== 0 || state !== "install ok installed") throw new BuildError(`${BUSYBOX_PACKAGE} is not installed: run 'apt-get install ${BUSYBOX_PACKAGE}' (scripts/setup.sh does)`);
  const path = run("dpkg-query", ["-L", BUSYBOX_PACKAGE]).toString().split("\n").find((line) => line.endsWith("/bin/busybox"));
  if (path === undefined) throw new BuildError(`${BUSYBOX_PACKAGE} ships no /bin/busybox`);
  const binary = readFileSync(path);
  checkStaticExecutable(binary, path);
  const applets = run(path, ["--list-full"]).toString().split("\n").filter((line) => line !== "");
  return { version, binary, applets };
}

/** The busybox image's layer: /bin/busybox, a relative symlink per applet, users, groups and the usual directories. */
function busyboxLayer({ binary, applets }) {
  const entries = new Map();
  const dir = (path, mode = 0o755) => entries.set(path, { path, mode, type: "5" });
  for (const path of ["bin", "dev", "etc", "home", "proc", "sbin", "sys", "usr", "usr/bin", "usr/sbin", "var"]) dir(path);
  dir("root", 0o700);
  dir("tmp", 0o1777);
  entries.set("bin/busybox", { path: "bin/busybox", mode: 0o755, type: "0", data: binary });
  entries.set("etc/passwd", { path: "etc/passwd", mode: 0o644, type: "0", data: Buffer.from("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n") });
  entries.set("etc/group", { path: "etc/group", mode: 0o644, type: "0", data: Buffer.from("root:x:0:\nnogroup:x:65534:\n") });
  for (const applet of applets) {
    // linuxrc is busybox's initrd init, meaningless in an image; busybox itself is the file above.
    if (applet === "linuxrc" || applet === "bin/busybox") continue;
    if (!dirname(applet).split("/").every((_, i, parts) => entries.has(parts.slice(0, i + 1).join("/")))) throw new BuildError(`busybox applet ${applet} is outside the image's directories`);
    entries.set(applet, { path: applet, mode: 0o777, type: "2", linkname: relative(dirname(`/${applet}`), "/bin/busybox") });
  }
  return tarArchive([...entries.values()]);
}

function descriptor(mediaType, bytes) {
  return { mediaType, digest: `sha256:${sha256Hex(bytes)}`, size: bytes.length };
}

function json(value) {
  return Buffer.from(`${JSON.stringify(value, null, 2)}\n`);
}

/** The busybox image as OCI image layout files: path (relative to the layout) → bytes. */
function busyboxLayout(busybox) {
  const tar = busyboxLayer(busybox);
  const layer = gzipSync(tar, { level: 9 });
  const config = json({
    architecture: "amd64",
    os: "linux",
    config: { Env: BUSYBOX_ENV, Cmd: ["sh"] },
    rootfs: { type: "layers", diff_ids: [`sha256:${sha256Hex(tar)}`] },
    history: [{ created_by: `msb build-guest-assets: Debian ${BUSYBOX_PACKAGE} ${busybox.version}` }],
  });
  const manifest = json({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: descriptor(OCI_CONFIG, config), layers: [descriptor(OCI_LAYER_GZIP, layer)] });
  const index = json({
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [{ ...descriptor(OCI_MANIFEST, manifest), platform: { architecture: "amd64", os: "linux" }, annotations: { "org.opencontainers.image.ref.name": "latest" } }],
  });
  const files = new Map([
    ["oci-layout", json({ imageLayoutVersion: "1.0.0" })],
    ["index.json", index],
  ]);
  for (const blob of [layer, config, manifest]) files.set(`blobs/sha256/${sha256Hex(blob)}`, blob);
  return { files, indexDigest: `sha256:${sha256Hex(index)}` };
}

// --- output ------------------------------------------------------------------------------

/** The asset version: what a VM snapshot taken on these assets depends on. */
function assetVersion({ vmlinuxSha256, initramfsSha256, busyboxIndexDigest, cmdline }) {
  return sha256Hex(`vmlinux sha256:${vmlinuxSha256}\ninitramfs sha256:${initramfsSha256}\nbusybox ${busyboxIndexDigest}\ncmdline ${cmdline}\n`);
}

/** The version the files in `out` really have (re-hashed), or undefined when any is missing. */
async function installedVersion(out) {
  try {
    const manifest = JSON.parse(await readFile(join(out, "manifest.json"), "utf8"));
    const computed = assetVersion({
      vmlinuxSha256: sha256Hex(await readFile(join(out, manifest.kernel))),
      initramfsSha256: sha256Hex(await readFile(join(out, manifest.initramfs))),
      busyboxIndexDigest: `sha256:${sha256Hex(await readFile(join(out, manifest.busyboxLayout, "index.json")))}`,
      cmdline: manifest.cmdline,
    });
    return computed === manifest.version ? computed : undefined;
  } catch {
    return undefined;
  }
}

/** Replaces `out` with `temp`: the old directory moves aside first, so `out` is always either old or new, never half of one. */
async function replaceDir(temp, out) {
  const old = join(dirname(out), `.${basename(out)}.old-${process.pid}`);
  const hadOld = existsSync(out);
  if (hadOld) await rename(out, old);
  try {
    await rename(temp, out);
  } catch (error) {
    if (hadOld) await rename(old, out);
    throw error;
  }
  if (hadOld) await rm(old, { recursive: true, force: true });
}

async function main() {
  const { values } = parseArgs({ options: { agent: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } } });
  const usage = "usage: node packages/vmm/scripts/build-guest-assets.mjs --agent PATH_TO_STATIC_AGENT [--out DIR]";
  if (values.help === true) {
    console.log(usage);
    return;
  }
  if (values.agent === undefined) throw new BuildError(`--agent is required\n${usage}`);
  const out = resolve(values.out ?? fileURLToPath(new URL("../assets", import.meta.url)));
  const cacheHome = process.env.XDG_CACHE_HOME !== undefined && process.env.XDG_CACHE_HOME !== "" ? process.env.XDG_CACHE_HOME : join(homedir(), ".cache");

  const agent = readFileSync(values.agent);
  checkStaticExecutable(agent, values.agent);

  const kernel = await cachedKernel(join(cacheHome, "msb-build", "kernel"));
  const vmlinuxSha256 = sha256Hex(await readFile(kernel.vmlinux));
  const { modules, builtin } = await resolveModules(kernel.modulesDir);
  log(`modules: load ${modules.map((m) => m.name).join(", ")}${builtin.length === 0 ? "" : `; built in: ${builtin.join(", ")}`}`);
  const diskModules = {};
  for (const [fstype, wanted] of Object.entries(DISK_FILESYSTEMS)) {
    diskModules[fstype] = (await resolveModules(kernel.modulesDir, wanted, new Set(modules.map((m) => m.name)))).modules;
  }
  log(`disk filesystems: ${Object.entries(diskModules).map(([fstype, list]) => `${fstype} (${list.map((m) => m.name).join(", ") || "built in"})`).join("; ")}`);
  const initramfs = buildInitramfs(agent, modules, diskModules);
  const busybox = installedBusybox();
  const layout = busyboxLayout(busybox);
  log(`busybox ${busybox.version}: ${busybox.applets.length} applets, layout index ${layout.indexDigest}`);

  const version = assetVersion({ vmlinuxSha256, initramfsSha256: sha256Hex(initramfs), busyboxIndexDigest: layout.indexDigest, cmdline: KERNEL_CMDLINE });
  if ((await installedVersion(out)) === version) {
    log(`${out} is up to date (version ${version})`);
    return;
  }
  await mkdir(dirname(out), { recursive: true });
  const temp = await mkdtemp(join(dirname(out), `.${basename(out)}.tmp-`));
  try {
    await chmod(temp, 0o755); // mkdtemp's 0700 would hide the assets from other users running msb
    await copyFile(kernel.vmlinux, join(temp, "vmlinux"));
    await writeFile(join(temp, "initramfs.cpio"), initramfs);
    for (const [path, bytes] of layout.files) {
      await mkdir(dirname(join(temp, "busybox-oci", path)), { recursive: true });
      await writeFile(join(temp, "busybox-oci", path), bytes);
    }
    const manifest = {
      version,
      kernelVersion: kernel.release,
      kernelPackage: `${kernel.packageName} ${kernel.packageVersion}`,
      kernel: "vmlinux",
      initramfs: "initramfs.cpio",
      modules: modules.map((m) => m.name),
      busyboxLayout: "busybox-oci",
      busyboxVersion: busybox.version,
      cmdline: KERNEL_CMDLINE,
    };
    await writeFile(join(temp, "manifest.json"), json(manifest));
    await replaceDir(temp, out);
  } catch (error) {
    await rm(temp, { recursive: true, force: true });
    throw error;
  }
  log(`wrote ${out} (version ${version})`);
}

main().catch((error) => {
  process.stderr.write(`guest-assets: error: ${error instanceof BuildError ? error.message : (error?.stack ?? String(error))}\n`);
  if (error?.cause !== undefined) process.stderr.write(`  cause: ${error.cause?.message ?? String(error.cause)}\n`);
  process.exitCode = 1;
});
