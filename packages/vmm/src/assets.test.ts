// findGuestAssets on directories built here, and on the real assets when setup built them.
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findGuestAssets } from "./assets.js";
import { VmmError } from "./errors.js";

const base = mkdtempSync(join(tmpdir(), "msb-vmm-assets-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));

const VERSION = "a".repeat(64);
let n = 0;

/** An assets directory with stand-in files and `manifest` (merged over a valid one) as manifest.json. */
function assetsDir(manifest: Record<string, unknown> = {}): string {
  const dir = join(base, String(n++));
  mkdirSync(join(dir, "busybox-oci"), { recursive: true });
  writeFileSync(join(dir, "vmlinux"), "\x7fELF");
  writeFileSync(join(dir, "initramfs.cpio"), "070701");
  const full = {
    version: VERSION,
    kernelVersion: "6.1.0-test",
    kernel: "vmlinux",
    initramfs: "initramfs.cpio",
    modules: ["virtio", "fuse"],
    busyboxLayout: "busybox-oci",
    cmdline: "console=ttyS0",
    ...manifest,
  };
  writeFileSync(join(dir, "manifest.json"), JSON.stringify(full));
  return dir;
}

async function expectMissing(promise: Promise<unknown>, dir: string, why: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(VmmError.is(error)).toBe(true);
  const vmmError = error as VmmError;
  expect(vmmError.code).toBe("ERR_VMM_ASSETS_MISSING");
  expect(vmmError.input).toBe(dir);
  expect(vmmError.message).toMatch(why);
  // The message says how to get them.
  expect(vmmError.message).toContain("bash scripts/setup.sh");
  expect(vmmError.message).toContain("node packages/vmm/scripts/build-guest-assets.mjs --agent");
}

describe("findGuestAssets", () => {
  it("resolves every asset of the manifest to an absolute path", async () => {
    const dir = assetsDir();
    await expect(findGuestAssets({ dir })).resolves.toEqual({
      dir,
      version: VERSION,
      kernel: join(dir, "vmlinux"),
      initramfs: join(dir, "initramfs.cpio"),
      cmdline: "console=ttyS0",
      busyboxLayout: join(dir, "busybox-oci"),
      kernelVersion: "6.1.0-test",
      modules: ["virtio", "fuse"],
    });
  });

  it("takes options.dir over MSB_GUEST_ASSETS, and MSB_GUEST_ASSETS over the package's own", async () => {
    const fromEnv = assetsDir({ kernelVersion: "env" });
    const explicit = assetsDir({ kernelVersion: "explicit" });
    const env = { MSB_GUEST_ASSETS: fromEnv };
    expect((await findGuestAssets({ env })).kernelVersion).toBe("env");
    expect((await findGuestAssets({ env, dir: explicit })).kernelVersion).toBe("explicit");
    await expectMissing(findGuestAssets({ env: { MSB_GUEST_ASSETS: join(base, "nowhere") } }), join(base, "nowhere"), /manifest\.json cannot be read/);
  });

  it("a missing or invalid asset is ERR_VMM_ASSETS_MISSING saying how to build them", async () => {
    const noManifest = join(base, "empty");
    mkdirSync(noManifest);
    await expectMissing(findGuestAssets({ dir: noManifest }), noManifest, /manifest\.json cannot be read/);

    const notJson = assetsDir();
    writeFileSync(join(notJson, "manifest.json"), "{");
    await expectMissing(findGuestAssets({ dir: notJson }), notJson, /is not JSON/);

    const noKernel = assetsDir();
    rmSync(join(noKernel, "vmlinux"));
    await expectMissing(findGuestAssets({ dir: noKernel }), noKernel, /vmlinux \(kernel\) is not there/);

    const emptyInitramfs = assetsDir();
    writeFileSync(join(emptyInitramfs, "initramfs.cpio"), "");
    await expectMissing(findGuestAssets({ dir: emptyInitramfs }), emptyInitramfs, /is not a non-empty file/);

    const escaping = assetsDir({ kernel: "../vmlinux" });
    await expectMissing(findGuestAssets({ dir: escaping }), escaping, /not a path inside the assets directory/);

    const badVersion = assetsDir({ version: "1" });
    await expectMissing(findGuestAssets({ dir: badVersion }), badVersion, /"version" is not a sha256/);

    const noCmdline = assetsDir({ cmdline: undefined });
    await expectMissing(findGuestAssets({ dir: noCmdline }), noCmdline, /has no "cmdline"/);
  });
});

const built = existsSync(new URL("../assets/manifest.json", import.meta.url));
if (!built) console.warn("skipping the check of the built guest assets: packages/vmm/assets/ does not exist (bash scripts/setup.sh builds it; CI always has it)");

describe.skipIf(!built)("findGuestAssets (assets built by setup)", () => {
  it("finds the package's own assets by default", async () => {
    const assets = await findGuestAssets({ env: {} });
    expect(assets.dir.endsWith(join("packages", "vmm", "assets"))).toBe(true);
    // The TSC rate is the host's, added at boot (vm.test.ts checks it in the guest).
    expect(assets.cmdline).not.toContain("tsc_early_khz=");
    expect(assets.cmdline).toContain("tsc=reliable");
    expect(assets.modules).toContain("virtio_console");
    expect(assets.modules).toContain("fuse");
    expect(existsSync(join(assets.busyboxLayout, "index.json"))).toBe(true);
  });
});
