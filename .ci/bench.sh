#!/usr/bin/env bash
# Benchmarks: compile them, run each once in test mode so they cannot rot, gate on the
# constant-time check, and run the zero-allocation test. Full benchmark runs stay out of
# CI: they take minutes and their figures mean nothing on a shared runner.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --no-run
for bench in benches/*.rs; do
  name=$(basename "$bench" .rs)
  cargo bench --bench "$name" -- --test
done
# Constant time, measured: the dudect check at 100 000 measurements per class (under a
# second of measuring). It fails only if a secret comparison measures |t| >= 10 in two
# runs while its deliberately leaky control is detected; a run too noisy to detect the
# control passes with a note (the rule and its reasons: benches/constant_time.rs).
CT_MEASUREMENTS=100000 cargo bench --bench constant_time -- --gate
# rotauth-axum's layer overhead against a bare axum handler, on loopback.
cargo bench -p rotauth-axum --bench overhead -- --test
# Release build too: the optimiser must not introduce an allocation either.
cargo test --test no_alloc
cargo test --release --test no_alloc
