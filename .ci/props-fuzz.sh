#!/usr/bin/env bash
# The fuzz smoke: build every cargo-fuzz target (nightly) and run each for at least 20 s
# (ten targets: 200 s in all). A crash, a failed assertion, a timeout or an allocation
# over 64 MiB fails the script.
# The property tests and the concurrency simulation run inside `cargo test`
# (.ci/core.sh), so they are not repeated.
#
# FUZZ_SECONDS overrides the time per target (the long local run used 600).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-20}
targets=(token_text record sessions ops recovery
  devise_credentials bearer_credentials cookie_credentials devise_bodies stored_record)
# Inputs up to 16 KiB for what arrives over HTTP (the devise server's body limit, and a
# generous header block); libFuzzer's default (4 KiB, or the largest seed) for the rest.
declare -A max_len=([devise_credentials]=16384 [bearer_credentials]=16384 [cookie_credentials]=16384 [devise_bodies]=16384)

if ! rustup toolchain list | grep -q '^nightly'; then
  rustup toolchain install nightly --profile minimal --no-self-update
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd fuzz
cargo +nightly fuzz build

declare -A execs
for target in "${targets[@]}"; do
  # libFuzzer adds new inputs to the first corpus directory: a scratch one under target/,
  # so the committed seeds in corpus/ stay small.
  scratch="target/corpus/$target"
  mkdir -p "$scratch"
  log="target/fuzz-$target.log"
  echo "::: fuzz $target for ${seconds} s"
  len=()
  if [ -n "${max_len[$target]:-}" ]; then
    len=(-max_len="${max_len[$target]}")
  fi
  if ! cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=20 -malloc_limit_mb=64 "${len[@]}" \
      -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz target $target failed; the crashing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  execs[$target]=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
done

echo "::: fuzz executions in ${seconds} s per target"
for target in "${targets[@]}"; do
  printf '%-20s %s\n' "$target" "${execs[$target]:-unknown}"
done
