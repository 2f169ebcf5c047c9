#!/usr/bin/env bash
# The quick local check of the npm package: builds the zero-import module into
# wasm/js/lib/ and runs the package's suite in Node. `.ci/js.sh` runs the same suite in
# Node, Deno, Bun, workerd and Chromium.
set -euo pipefail
cd "$(dirname "$0")/../wasm"

# Needs Debian's binaryen (wasm-opt) for the build.
if [ ! -d js/node_modules ]; then
  (cd js && npm ci --no-audit --no-fund)
fi
bash build.sh
cd js
node --test-reporter=spec test/node.test.js
