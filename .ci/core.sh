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
cargo clippy -p rotauth --all-targets --all-features -- -D warnings
# The README's test command: every test, the PostgreSQL cluster tests included, against a
# throwaway PostgreSQL cluster that the script installs, starts and removes.
bash scripts/with-postgres.sh cargo test --workspace
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps
for target in "${no_std_targets[@]}"; do
  cargo build -p rotauth --lib --no-default-features --target "$target"
done
# The optional serde support is no_std too.
cargo build -p rotauth --lib --no-default-features --features serde --target thumbv7em-none-eabihf
