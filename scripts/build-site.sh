#!/usr/bin/env bash
# Builds the browser half of the site into target/site: the hydrate WebAssembly and its JS
# glue (pkg/jigsaw-lab.wasm, pkg/jigsaw-lab.js), the stylesheet (pkg/jigsaw-lab.css) and the
# static files of public/. These are the steps `cargo leptos build --release --frontend-only`
# takes, run directly, so a first setup does not spend minutes compiling cargo-leptos:
#   1. cargo builds the `frontend` crate for wasm32 in the `wasm-release` profile;
#   2. wasm-bindgen (the version Cargo.lock pins) writes the JS glue, for `--target web`;
#   3. wasm-opt -Oz shrinks the module;
#   4. the stylesheet and public/ are copied next to it.
# The server's leptos_axum HydrationScripts load /pkg/<output name>.js and .wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

name="$LEPTOS_OUTPUT_NAME"
site=target/site
pkg="$site/pkg"
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"

say "Building the browser bundle (wasm32, profile wasm-release)"
cargo build --lib -p frontend --target wasm32-unknown-unknown --profile wasm-release

say "Generating the JS glue (wasm-bindgen) and shrinking the module (wasm-opt -Oz)"
staging="$site/.pkg.partial"
rm -rf "$staging"
mkdir -p "$staging"
wasm-bindgen --target web --out-name "$name" --out-dir "$staging" "$wasm"
mv "$staging/${name}_bg.wasm" "$staging/$name.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  "$staging/$name.wasm" -o "$staging/$name.wasm"
cp style/main.css "$staging/$name.css"

say "Compressing the bundle once at brotli's highest quality (served as .br)"
# Node's zlib has brotli; the server sends these files to browsers that accept br instead
# of compressing the bundle again, at a lower quality, for every page load.
node -e '
const fs = require("fs");
const zlib = require("zlib");
for (const file of process.argv.slice(1)) {
  const data = fs.readFileSync(file);
  const packed = zlib.brotliCompressSync(data, {
    params: {
      [zlib.constants.BROTLI_PARAM_QUALITY]: 11,
      [zlib.constants.BROTLI_PARAM_LGWIN]: 24,
      [zlib.constants.BROTLI_PARAM_SIZE_HINT]: data.length,
    },
  });
  fs.writeFileSync(file + ".br", packed);
}
' "$staging/$name.wasm" "$staging/$name.js" "$staging/$name.css"

# Swap the new bundle in whole, so a running server never serves half of it.
mkdir -p "$site"
rm -rf "$pkg.old"
[ -d "$pkg" ] && mv "$pkg" "$pkg.old"
mv "$staging" "$pkg"
rm -rf "$pkg.old"
cp -R public/. "$site/"
printf 'site: %s (%s bytes of wasm, %s as served with brotli)\n' "$site" \
  "$(stat -c %s "$pkg/$name.wasm")" "$(stat -c %s "$pkg/$name.wasm.br")"
