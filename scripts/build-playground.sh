#!/usr/bin/env bash
# Builds the policy playground into dist/playground/: a static page (index.html,
# playground.js, playground.css) and the lockstep-playground module with its
# wasm-bindgen glue. The module is also embedded as base64 (lockstep_playground_wasm.js),
# so the page works opened straight from disk (file://), offline, as well as from any
# static host. Installs the matching wasm-bindgen-cli once (a debug build: ~1 min on 2
# cores instead of ~2 for a release build, and it turns this module into the same bytes in
# under a second).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
version=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' crates/lockstep-playground/Cargo.toml)
[ -n "$version" ] || { echo "build-playground: no pinned wasm-bindgen version in crates/lockstep-playground/Cargo.toml" >&2; exit 1; }
rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || true
bindgen="${WASM_BINDGEN:-wasm-bindgen}"
if [ "$("$bindgen" --version 2>/dev/null)" != "wasm-bindgen $version" ]; then
  echo "== installing wasm-bindgen-cli $version (once; the glue must match the crate's version)"
  cargo install -q wasm-bindgen-cli --version "$version" --no-default-features --debug
  bindgen="$(dirname "$(command -v cargo)")/wasm-bindgen"
  [ -x "$bindgen" ] || bindgen=wasm-bindgen
fi
cargo build -q -p lockstep-playground --target wasm32-unknown-unknown --profile playground
mkdir -p dist
tmp=$(mktemp -d dist/.playground.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$bindgen" --target no-modules --no-typescript --remove-name-section --remove-producers-section --out-dir "$tmp" \
  target/wasm32-unknown-unknown/playground/lockstep_playground.wasm
{
  printf '// lockstep_playground_bg.wasm, embedded: the page then needs no fetch and opens from file://\n'
  printf 'window.LOCKSTEP_WASM_B64 = "'
  base64 -w0 "$tmp/lockstep_playground_bg.wasm"
  printf '";\n'
} > "$tmp/lockstep_playground_wasm.js"
cp crates/lockstep-playground/web/index.html crates/lockstep-playground/web/playground.js \
  crates/lockstep-playground/web/playground.css "$tmp/"
chmod 755 "$tmp"
rm -rf dist/playground
mv "$tmp" dist/playground
trap - EXIT
echo "playground: $PWD/dist/playground/index.html ($(du -sh dist/playground | cut -f1))"
