#!/usr/bin/env bash
# CI stage for devise-server beyond `cargo test`: the demo page and devise_token_auth's
# JavaScript clients (cross-origin) in headless Chromium (Debian's chromium driven by
# playwright-core from npm; no browser download), many tabs of rotauth/client against it
# over a network that delays and reorders (wasm/js/test/tabs.mjs), and the abuse
# measurements (sign-in flood, 20 000 slow connections) with their figures.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
start=$SECONDS

if ! command -v chromium >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt-get -o DPkg::Lock::Timeout=900 update -q
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
        chromium nodejs npm
fi
echo "chromium: $(chromium --version 2>/dev/null || echo missing)"

cargo build -q -p devise-server --bin devise_server
(cd devise-server/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
echo "== demo page in headless Chromium"
DEVISE_SERVER_BIN="$root/target/debug/devise_server" node devise-server/e2e/page.test.mjs
echo "== devise_token_auth JavaScript clients, cross-origin, in headless Chromium"
DEVISE_SERVER_BIN="$root/target/debug/devise_server" node devise-server/e2e/clients.test.mjs

echo "== many tabs in headless Chromium against the devise server (rotauth/client and a naive client)"
# The npm package's harness: its client module is compiled here if the js stage has not run.
(cd wasm/js && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; } && npm run --silent build:client)
(cd wasm/js && node test/tabs.mjs --host=devise --duration=20 --latency=50 --jitter=50 --reload=burst --check)

echo "== abuse measurements"
# A debug build with cheap hashing: CI checks what the limits guarantee (the signed-in
# client is served through the flood, a real request is answered within 1 s among 20 000
# slow connections); the memory and latency figures in devise-server/README.md come from
# `bash devise-server/scripts/flood.sh` on a release build.
PROFILE=debug FLOOD_SERVER_FLAGS=--insecure-fast-hashing bash devise-server/scripts/flood.sh
echo ".ci/devise.sh: done in $((SECONDS - start)) s"
