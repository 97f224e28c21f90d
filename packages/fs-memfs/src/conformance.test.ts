import { describeConformance } from "@msb/fs/testing";
import { MemFs } from "./index.js";

describeConformance({ name: "MemFs", create: () => ({ fs: new MemFs() }) });

// A capacity-bound MemFs must behave the same while it has room.
describeConformance({ name: "MemFs (64 MiB, 100k inodes)", create: () => ({ fs: new MemFs({ capacity: 64 * 1024 * 1024, maxInodes: 100_000 }) }) });
