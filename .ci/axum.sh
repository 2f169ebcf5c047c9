#!/usr/bin/env bash
# rotauth-axum with every store compiled in: lints, docs, and its whole test suite (the
# store contract suite and the 50 x 200 load test on memory, SQLite, PostgreSQL and Redis)
# against throwaway PostgreSQL and Redis servers that the scripts install, start and remove.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo clippy -p rotauth-axum --all-targets --all-features -- -D warnings
RUSTDOCFLAGS=-Dwarnings cargo doc -p rotauth-axum --no-deps --all-features
bash scripts/with-services.sh cargo test -p rotauth-axum --all-features
