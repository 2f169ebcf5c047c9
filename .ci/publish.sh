#!/usr/bin/env bash
# The core as crates.io and its users see it:
#   - the package (`cargo publish --dry-run`: only the core's files, built on their own);
#   - the declared MSRV builds the library and runs its tests, every feature on;
#   - the oldest versions of its dependencies that Cargo.toml allows build it
#     (`-Z direct-minimal-versions`, in a copy of the packaged crate, so the repository's
#     Cargo.lock is never touched);
#   - its docs build without a warning, as docs.rs builds them (all features, `--cfg docsrs`).
# Prints the time of each step; any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

# The root package's own `rust-version` and `version` (the first of each in Cargo.toml).
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)

timings=()
step() {
  local name=$1
  shift
  echo "::: publish: $name"
  local start=$SECONDS
  "$@"
  local took=$((SECONDS - start))
  echo "::: publish: $name took $took s"
  timings+=("$(printf '%-28s %4d s' "$name" "$took")")
}

install() {
  rustup toolchain install "$msrv" --profile minimal
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
  fi
}

msrv_tests() {
  # Its own target dir: another compiler's artefacts would evict the stable ones.
  # Every test file, with the simulation and the property tests cut down: the full counts
  # ran on stable in the core stage, this run is about the compiler.
  ROTAUTH_SIM_SEEDS=50 PROPTEST_CASES=32 CARGO_TARGET_DIR=target/msrv \
    cargo "+$msrv" test -p rotauth --all-features
}

minimal_versions() {
  cargo package -p rotauth --no-verify --quiet
  local root=$PWD dir
  dir=$(mktemp -d)
  tar xzf "target/package/rotauth-$version.crate" -C "$dir"
  (
    cd "$dir/rotauth-$version"
    cargo +nightly update -Z direct-minimal-versions
    CARGO_TARGET_DIR=$root/target/minimal-versions cargo +nightly build --all-features
  )
  rm -rf "$dir"
}

docs() {
  RUSTDOCFLAGS=-Dwarnings cargo doc -p rotauth --no-deps --all-features
  CARGO_TARGET_DIR=target/docsrs RUSTDOCFLAGS="-Dwarnings --cfg docsrs" \
    cargo +nightly doc -p rotauth --no-deps --all-features
}

step "install" install
step "cargo publish --dry-run" cargo publish --dry-run -p rotauth
step "MSRV $msrv: test" msrv_tests
step "minimal versions: build" minimal_versions
step "docs" docs

echo "::: publish: step times"
printf '%s\n' "${timings[@]}"
