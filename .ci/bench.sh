#!/usr/bin/env bash
# Benchmarks: compile them, run each once in criterion's test mode so they
# cannot rot, and run the zero-allocation test. Full benchmark runs stay out of CI: they
# take minutes and their figures mean nothing on a shared runner.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --no-run
for bench in benches/*.rs; do
  name=$(basename "$bench" .rs)
  cargo bench --bench "$name" -- --test
done
# rotauth-axum's layer overhead against a bare axum handler, on loopback.
cargo bench -p rotauth-axum --bench overhead -- --test
# Release build too: the optimiser must not introduce an allocation either.
cargo test --test no_alloc
cargo test --release --test no_alloc
