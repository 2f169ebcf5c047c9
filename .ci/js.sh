#!/usr/bin/env bash
# rotauth for JavaScript: the npm package in wasm/js/. Installs what it needs on a fresh
# Debian machine (Debian's chromium and binaryen; Deno, Bun, workerd, esbuild, playwright-core and
# TypeScript from npm with the committed lock file), builds the zero-import module once,
# checks the type declarations, packs the package, runs the one suite in Node, Deno,
# Bun, workerd and headless Chromium, the parity scenarios (parity/scenarios/) in Node, and
# the client's suite (`rotauth/client`, compiled from TypeScript) in Node, Deno, Bun and
# Chromium, and the cookie transport in Chromium over HTTP. Prints the time of each step;
# any failure fails it.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
step() {
  local name=$1
  shift
  echo "::: js: $name"
  local start=$SECONDS
  "$@"
  local took=$((SECONDS - start))
  echo "::: js: $name took $took s"
  timings+=("$(printf '%-28s %4d s' "$name" "$took")")
}

install() {
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg -s chromium binaryen >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium binaryen >/dev/null
  fi
  rustup target add wasm32-unknown-unknown
  (cd wasm/js && npm ci --no-audit --no-fund)
  node --version
}

pack() {
  local dir
  dir=$(mktemp -d)
  (cd wasm/js && npm pack --loglevel=warn --pack-destination "$dir" >/dev/null)
  local tarball
  tarball=$(ls "$dir"/rotauth-*.tgz)
  # The package must carry the module, its inline copy and the declarations.
  local listing
  listing=$(tar -tzf "$tarball")
  for file in lib/rotauth.wasm lib/wasm-inline.js lib/index.js lib/workerd.js lib/core.js lib/exchange.js lib/errors.js lib/layout.js lib/cookie.js lib/hono.js lib/index.d.ts lib/hono.d.ts lib/client.js lib/client.d.ts README.md; do
    grep -qx "package/$file" <<<"$listing" || { echo "npm pack: $file missing"; return 1; }
  done
  echo "package: $(basename "$tarball"), $(wc -c <"$tarball") bytes packed, $(tar -xzOf "$tarball" | wc -c) bytes unpacked, $(wc -l <<<"$listing") files"
  rm -rf "$dir"
}

js=wasm/js
step "install" install
step "build the module" bash wasm/build.sh
step "types (tsc)" bash -c "cd $js && node_modules/.bin/tsc -p test/tsconfig.json"
step "client (tsc)" bash -c "cd $js && npm run --silent build:client && node_modules/.bin/tsc -p test/client/tsconfig.json"
step "npm pack" pack
step "node" bash -c "cd $js && node --test-reporter=spec test/node.test.js"
step "parity (node)" bash -c "cd $js && node --test-reporter=spec test/parity.test.js"
step "deno" bash -c "cd $js && node_modules/.bin/deno run --allow-read --no-prompt test/run.js"
step "bun" bash -c "cd $js && node_modules/.bin/bun test/run.js"
step "workerd" bash -c "cd $js && node test/run-workerd.mjs"
step "chromium" bash -c "cd $js && node test/run-browser.mjs"
step "client: node" bash -c "cd $js && node --test-reporter=spec test/client/node.test.js"
step "client: deno" bash -c "cd $js && node_modules/.bin/deno run --allow-read --no-prompt test/client/run.js"
step "client: bun" bash -c "cd $js && node_modules/.bin/bun test/client/run.js"
step "client: chromium" bash -c "cd $js && node test/run-browser.mjs wasm/js/test/client/browser.html"
# Five tabs per client in one Chromium context, against the naive client: no 401 and no
# sign-out for rotauth/client (`--duration=120` or more for the figures).
step "client: many tabs" bash -c "cd $js && node test/tabs.mjs --duration=20 --latency=50 --jitter=50 --reload=burst --check"
# The same against rotauth-axum's example app in cookie mode: the browser keeps the cookie.
# No added latency and reloads on a timer: a cookie page cannot recover a rotation lost to
# a reload (docs/BROWSER.md, "Measured"), which `--reload=burst` provokes on purpose.
# The core stage's `cargo test --all-features` has built most of what the example needs.
step "axum example (build)" cargo build -q -p rotauth-axum --example axum_app --features sqlite
step "cookies: many tabs" bash -c "cd $js && node test/tabs.mjs --host=axum-cookie --duration=20 --check"
# The cookie transport in Chromium over HTTP: httpOnly, forgery screening, a late 401.
step "cookies: chromium" bash -c "cd $js && node test/cookies-browser.mjs"
# The benchmark's figures mean nothing on a shared runner: run it once in its quick mode so
# that it cannot rot (`node bench/bench.mjs` for the figures).
step "bench (smoke)" bash -c "cd $js && node bench/bench.mjs --quick"

echo "::: js: step times"
printf '%s\n' "${timings[@]}"
