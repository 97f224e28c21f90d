// A wholly hostile guest: its kernel boots our initramfs, but PID 1 is a
// script that answers the agent protocol only to lure the host on, then writes
// garbage into the agent port and the FUSE port. The host must reject it with
// typed errors, never crash, never hang, and leave no QEMU behind.
import { execFileSync } from "node:child_process";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MemFs } from "@msb/fs-memfs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findGuestAssets, type GuestAssets } from "./assets.js";
import { VmmError } from "./errors.js";
import { encodeFrame, FLAG_END } from "./frame.js";
import { MicroVm } from "./vm.js";
import { BUSYBOX } from "./vm-root.fixture.js";

let work: string;
let assets: GuestAssets;

/** busybox printf's escapes for raw bytes. */
const printfBytes = (bytes: Uint8Array): string => [...bytes].map((b) => `\\${b.toString(8).padStart(3, "0")}`).join("");

/**
 * Guest assets whose /init is `script` (busybox sh), appended as a second
 * cpio archive over the real initramfs: the kernel unpacks both in order.
 */
async function hostileAssets(name: string, script: string): Promise<GuestAssets> {
  const dir = join(work, name);
  await mkdir(join(dir, "bin"), { recursive: true });
  await copyFile(BUSYBOX, join(dir, "bin/busybox"));
  await writeFile(join(dir, "init"), `#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev; mount -t proc proc /proc; mount -t sysfs sys /sys
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
port() { for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = "$1" ] && echo /dev/\${p##*/}; done; }
until [ -n "$(port agent)" ] && [ -n "$(port fs0)" ]; do sleep 0.05; done
AGENT=$(port agent); FS0=$(port fs0)
${script}
sleep 1000
`);
  await chmod(join(dir, "init"), 0o755);
  const extra = execFileSync("sh", ["-c", "find . | cpio -o -H newc --owner 0:0 2>/dev/null"], { cwd: dir, maxBuffer: 64 << 20 });
  const initramfs = join(work, `${name}.cpio`);
  await writeFile(initramfs, Buffer.concat([await readFile(assets.initramfs), extra]));
  return { ...assets, initramfs, version: `hostile-${name}` };
}

beforeAll(async () => {
  assets = await findGuestAssets();
  work = await mkdtemp(join(tmpdir(), "msb-hostile-"));
});
afterAll(async () => {
  if (work !== undefined) await rm(work, { recursive: true, force: true });
});

const start = (guest: GuestAssets) => MicroVm.start({ mounts: [{ target: "/", fs: new MemFs() }], assets: guest, savedState: false, bootTimeoutMs: 30_000 });

describe("a hostile guest", () => {
  it("writing garbage instead of a hello gets ERR_VMM_PROTOCOL, not a hang", async () => {
    const guest = await hostileAssets("garbage", "head -c 65536 /dev/urandom > $AGENT; head -c 65536 /dev/urandom > $FS0");
    const error: unknown = await start(guest).catch((e: unknown) => e);
    expect(VmmError.is(error) && error.code).toBe("ERR_VMM_PROTOCOL");
  }, 60_000);

  it("claiming a huge frame length is cut off at once", async () => {
    const guest = await hostileAssets("huge", "printf '\\377\\377\\377\\177' > $AGENT");
    const error: unknown = await start(guest).catch((e: unknown) => e);
    expect(VmmError.is(error) && error.code).toBe("ERR_VMM_PROTOCOL");
  }, 60_000);

  it("that turns hostile after setup fails its calls with typed errors and is stopped", async () => {
    const hello = encodeFrame(1, FLAG_END, { t: "hello", version: 1, agent: "evil 6.6.6" });
    const ok = encodeFrame(2, FLAG_END, { t: "ok" });
    // Lure the host through hello and setup, then wreck both ports.
    const guest = await hostileAssets(
      "turncoat",
      `printf '${printfBytes(hello)}' > $AGENT; sleep 1; printf '${printfBytes(ok)}' > $AGENT; sleep 2
head -c 1048576 /dev/urandom > $FS0; head -c 100000 /dev/urandom > $AGENT`,
    );
    const vm = await start(guest);
    expect(vm.agent.agentName).toBe("evil 6.6.6");
    const proc = vm.agent.exec({ argv: ["true"] });
    const error: unknown = await proc.exit.catch((e: unknown) => e);
    expect(VmmError.is(error) && ["ERR_VMM_PROTOCOL", "ERR_VMM_GONE"]).toContain((error as VmmError).code);
    expect((await vm.agent.closed)?.code ?? "ERR_VMM_GONE").toMatch(/^ERR_VMM_(PROTOCOL|GONE)$/);
    // The guest will not power off; stop() kills QEMU after its timeout.
    await vm.stop(1000);
    expect(await vm.exited).toMatchObject({ signal: "SIGKILL" });
  }, 60_000);
});
