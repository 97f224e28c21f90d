// Child process of the concurrent-pull test: pulls argv[2] into MSB home argv[3].
import { pull } from "./pull.js";

const image = await pull(process.argv[2]!, { home: process.argv[3]!, insecure: true });
process.stdout.write(`${JSON.stringify({ digest: image.digest, layers: image.layerDirs })}\n`);
