#!/usr/bin/env bash
# Builds the browser half of the site into target/site: the hydrate WebAssembly and its JS
# glue (pkg/jigsaw-lab.wasm, pkg/jigsaw-lab.js), the stylesheet (pkg/jigsaw-lab.css) and the
# static files of public/. These are the steps `cargo leptos build --release --frontend-only`
# takes, run directly, so a first setup does not spend minutes compiling cargo-leptos:
#   1. cargo builds the `frontend` crate for wasm32 in the `wasm-release` profile: the whole
#      app, then the four islands bundles (one group of islands each); when these modules,
#      the stylesheet and these scripts are what the last build used
#      (target/site-build.stamp), the site is up to date and the steps below are skipped;
#   2. wasm-split-cli splits it along the lazy routes: a main module and a module per page;
#   3. wasm-bindgen (the version Cargo.lock pins) writes the JS glue, for `--target web`;
#      then the same for the islands bundles (pkg/jigsaw-lab-<group>.{wasm,js}), which the
#      islands pages load instead (app/src/islands.rs);
#   4. wasm-opt -Oz shrinks each module of 16 KB or more, scripts/shrink-wasm.mjs the small
#      ones, and every module loses its custom sections (names, producers, target features);
#   5. the stylesheet and public/ are copied next to it.
# The server's leptos_axum HydrationScripts load /pkg/<output name>.js and .wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

name="$LEPTOS_OUTPUT_NAME"
site=target/site
pkg="$site/pkg"
wasm="$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm-release/frontend.wasm"

# The app and the islands bundles: `frontend` on its own, then with one group's islands
# each (app/build.rs), which the pages of that group load instead of the whole app
# (app/src/islands.rs). Each module is kept aside, since the next build overwrites $wasm.
modules=target/site-modules
mkdir -p "$modules"
say "Building the browser bundle (wasm32, profile wasm-release)"
cargo build --lib -p frontend --target wasm32-unknown-unknown --profile wasm-release
cp "$wasm" "$modules/app.wasm"
for group in lessons class runs instructor; do
  say "Building the $group pages' islands bundle"
  cargo build --lib -p frontend --features "$group-islands" --target wasm32-unknown-unknown \
    --profile wasm-release
  cp "$wasm" "$modules/$group.wasm"
done

# The rest (split, glue, wasm-opt, brotli) takes a minute or more and gives the same files
# for the same modules: skip it when nothing it reads has changed since the last build.
stamp_file=target/site-build.stamp
stamp=$( (sha256sum "$modules"/*.wasm style/main.css scripts/build-site.sh scripts/shrink-wasm.mjs
  wasm-bindgen --version) | sha256sum | cut -d' ' -f1)
if [ -f "$pkg/$name.js" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  cp -R public/. "$site/"
  say "The browser bundles are up to date ($site)"
  exit 0
fi

say "Splitting the module per page, generating the JS glue (wasm-bindgen), shrinking (wasm-opt -Oz)"
staging="$site/.pkg.partial"
split="$site/.split"
rm -rf "$staging" "$split"
mkdir -p "$staging" "$split"
# wasm-split-cli cuts the module at each lazy route (app/src/pages/routes.rs): a main module
# ($name.wasm, whose glue the loader imports as ./$name.js), one module per page, chunks of
# code that several pages share, and the loader __wasm_split.js. The build links with
# --emit-relocs (.cargo/config.toml), which the split needs.
wasm-split-cli --target web --out-name "$name" "$modules/app.wasm" "$split"
wasm-bindgen --target web --keep-lld-exports --no-demangle --out-name "$name" --out-dir "$staging" \
  "$split/$name.wasm"
mv "$staging/${name}_bg.wasm" "$staging/$name.wasm"
rm "$split/$name.wasm"
mv "$split"/* "$staging/"
rmdir "$split"
# The islands bundles are one module each.
for group in lessons class runs instructor; do
  wasm-bindgen --target web --no-demangle --out-name "$name-$group" --out-dir "$staging" \
    "$modules/$group.wasm"
  mv "$staging/${name}-${group}_bg.wasm" "$staging/$name-$group.wasm"
done
rm "$staging"/*.d.ts
# wasm-opt starts slowly, so it runs only on the modules of 16 KB or more; then
# scripts/shrink-wasm.mjs optimizes the hundreds of small shared chunks in one process and
# strips every module's custom sections (names, producers, target features; see
# docs/benchmarks.md).
for module in "$staging"/*.wasm; do
  if [ "$(stat -c %s "$module")" -ge 16384 ]; then
    wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int "$module" -o "$module"
  fi
done
node scripts/shrink-wasm.mjs "$staging"/*.wasm
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
' "$staging"/*.wasm "$staging"/*.js "$staging/$name.css"

# Swap the new bundle in whole, so a running server never serves half of it.
mkdir -p "$site"
rm -rf "$pkg.old"
[ -d "$pkg" ] && mv "$pkg" "$pkg.old"
mv "$staging" "$pkg"
rm -rf "$pkg.old"
cp -R public/. "$site/"
echo "$stamp" > "$stamp_file"
printf 'site: %s (main module: %s bytes of wasm, %s as served with brotli; %s page and chunk modules)\n' \
  "$site" "$(stat -c %s "$pkg/$name.wasm")" "$(stat -c %s "$pkg/$name.wasm.br")" \
  "$(ls "$pkg" | grep -c -E '^(split|chunk)_.*\.wasm$')"
for group in lessons class runs instructor; do
  printf 'islands bundle %s: %s bytes of wasm, %s as served with brotli\n' "$group" \
    "$(stat -c %s "$pkg/$name-$group.wasm")" "$(stat -c %s "$pkg/$name-$group.wasm.br")"
done
