#!/usr/bin/env bash
# Builds wasm/ for wasm32-unknown-unknown and checks it from Node: no imports, tokens equal
# to the known-answer vectors, sign-in and decide per the decision table.
set -euo pipefail
cd "$(dirname "$0")/../wasm"

cargo build --quiet --release --target wasm32-unknown-unknown
module=target/wasm32-unknown-unknown/release/rotauth_wasm.wasm
echo "module: $module, $(wc -c <"$module") bytes"
node check.mjs "$module"
