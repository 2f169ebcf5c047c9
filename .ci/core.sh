#!/usr/bin/env bash
# The core gate: formatting, lints, the README's test command, docs, and no_std builds
# for bare-metal and WASM targets.
set -euo pipefail
cd "$(dirname "$0")/.."

no_std_targets=(thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imc-unknown-none-elf wasm32-unknown-unknown)
rustup component add rustfmt clippy
rustup target add "${no_std_targets[@]}"

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --workspace --all-targets --all-features -- -D warnings
# The README's test command: every test of every package with every store compiled in,
# the PostgreSQL cluster tests and rotauth-axum's contract and load suites on PostgreSQL and
# Redis included, against throwaway servers that the scripts install, start and remove.
bash scripts/with-services.sh cargo test --workspace --all-features
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --all-features
for target in "${no_std_targets[@]}"; do
  cargo build -p rotauth --lib --no-default-features --target "$target"
done
# The optional serde support is no_std too.
cargo build -p rotauth --lib --no-default-features --features serde --target thumbv7em-none-eabihf
