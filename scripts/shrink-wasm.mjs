// Shrinks the split browser bundle's WebAssembly modules after wasm-opt has run on the large
// ones (scripts/build-site.sh):
//   - each module under 16 KB (the split's hundreds of shared chunks) is optimized for size
//     as `wasm-opt -Oz` would, through binaryen's JavaScript API in this one process, which
//     takes seconds where one wasm-opt run per chunk took minutes;
//   - every module loses its custom sections (function names, producers, target features):
//     the browser reads none of them, and in the small chunks they were most of the bytes.
//
//   node scripts/shrink-wasm.mjs MODULE.wasm...
import fs from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const binaryenPath = join(dirname(fileURLToPath(import.meta.url)), "..", ".tools", "node_modules", "binaryen", "index.js");
const binaryen = (await import(binaryenPath)).default;

/** Modules below this size are optimized here; the larger ones went through wasm-opt. */
const SMALL = 16384;

/** The features the Rust build's modules use (their target_features section). */
const FEATURES =
  binaryen.Features.BulkMemory |
  binaryen.Features.BulkMemoryOpt |
  binaryen.Features.CallIndirectOverlong |
  binaryen.Features.Multivalue |
  binaryen.Features.MutableGlobals |
  binaryen.Features.NontrappingFPToInt |
  binaryen.Features.ReferenceTypes |
  binaryen.Features.SignExt;

/** The unsigned LEB128 number at `data[at]`, and how many bytes it takes. */
function leb(data, at) {
  let value = 0;
  let shift = 0;
  let read = 0;
  let byte;
  do {
    byte = data[at + read++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, read];
}

/** `data` without its custom sections (section id 0). */
function withoutCustomSections(data, file) {
  const kept = [data.subarray(0, 8)];
  let at = 8;
  while (at < data.length) {
    const [size, read] = leb(data, at + 1);
    const end = at + 1 + read + size;
    if (data[at] !== 0) kept.push(data.subarray(at, end));
    at = end;
  }
  if (at !== data.length) throw new Error(`${file}: a section runs past the end of the module`);
  return Buffer.concat(kept);
}

binaryen.setOptimizeLevel(2);
binaryen.setShrinkLevel(2);
for (const file of process.argv.slice(2)) {
  // Stripped first too, so that binaryen does not read (and warn about) the name sections.
  let data = withoutCustomSections(fs.readFileSync(file), file);
  if (data.length < SMALL) {
    const module = binaryen.readBinary(data);
    module.setFeatures(FEATURES);
    module.optimize();
    if (!module.validate()) throw new Error(`${file}: binaryen produced an invalid module`);
    data = Buffer.from(module.emitBinary());
    module.dispose();
  }
  fs.writeFileSync(file, withoutCustomSections(data, file));
}
