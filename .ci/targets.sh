#!/usr/bin/env bash
# rotauth where it is meant to run. Installs what it needs on a fresh Debian
# machine, then runs:
#   - embedded-tests/ on emulated Cortex-M4F and Cortex-M0 (QEMU), and proves that a
#     failure, a panic and a HardFault each fail the run;
#   - the flash/RAM/stack report of size/ (thumbv7em and thumbv6m, both sha2 backends);
#   - the crate's own test suite under WASI (Node's `node:wasi`, see .cargo/config.toml);
#   - the host test suite on 32-bit i686;
#   - Miri on the host and on big-endian s390x, side by side (one core each).
# Prints the time of each step; any failure fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."

# Cross builds of the root crate get their own target dir, so they never invalidate or
# wait on the host builds of .ci/core.sh. Sub-crates (embedded-tests/, size/, wasm/) are
# workspaces of their own with their own target/. wasm/ (the npm package) has its own stage,
# .ci/js.sh.
targets_dir=${ROTAUTH_TARGETS_DIR:-$PWD/target/targets}

timings=()
step() {
  local name=$1
  shift
  echo "::: targets: $name"
  local start=$SECONDS
  "$@"
  local took=$((SECONDS - start))
  echo "::: targets: $name took $took s"
  timings+=("$(printf '%-34s %4d s' "$name" "$took")")
}

install() {
  # qemu-system-arm: the Cortex-M boards. gcc-multilib: the C runtime and linker for
  # i686 (32-bit x86 runs natively on x86_64, no emulator needed).
  export DEBIAN_FRONTEND=noninteractive
  if ! dpkg -s qemu-system-arm gcc-multilib >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends qemu-system-arm gcc-multilib >/dev/null
  fi
  qemu-system-arm --version | head -1
  node --version
  rustup target add thumbv7em-none-eabihf thumbv6m-none-eabi wasm32-wasip1 \
    wasm32-unknown-unknown i686-unknown-linux-gnu
  rustup component add llvm-tools
  if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
  fi
  rustup +nightly component add miri rust-src
  # Miri builds its own sysroot for s390x from rust-src: no s390x rust-std is needed.
  CARGO_TARGET_DIR=$targets_dir cargo +nightly miri setup
  CARGO_TARGET_DIR=$targets_dir cargo +nightly miri setup --target s390x-unknown-linux-gnu
}

wasi_tests() {
  # The core's whole suite, proptests included, each test binary run by
  # scripts/wasi-run.mjs. tests/no_alloc.rs is `cfg`'d out on WASM.
  CARGO_TARGET_DIR=$targets_dir cargo test -p rotauth --target wasm32-wasip1
}

i686_tests() {
  # The core package only: the example server is a host application, tested natively.
  CARGO_TARGET_DIR=$targets_dir cargo test -p rotauth --target i686-unknown-linux-gnu
}

miri_both() {
  # Miri is single-threaded: run the two targets at once, each in its own target dir (so
  # neither waits on the other's build lock), and show each log whole when both are done.
  local logs
  logs=$(mktemp -d)
  local host_start=$SECONDS
  (CARGO_TARGET_DIR=$targets_dir/miri-host bash scripts/miri.sh >"$logs/host" 2>&1; echo $? >"$logs/host.rc"; echo $((SECONDS - host_start)) >"$logs/host.s")&
  (CARGO_TARGET_DIR=$targets_dir/miri-s390x bash scripts/miri.sh s390x-unknown-linux-gnu >"$logs/s390x" 2>&1; echo $? >"$logs/s390x.rc"; echo $((SECONDS - host_start)) >"$logs/s390x.s")&
  wait
  local failed=0
  for run in host s390x; do
    echo "--- miri $run ($(cat "$logs/$run.s") s, exit $(cat "$logs/$run.rc"))"
    grep -vE '^\s+(Compiling|Checking|Fresh) ' "$logs/$run"
    if [ "$(cat "$logs/$run.rc")" != 0 ]; then
      failed=1
    fi
  done
  return "$failed"
}

step "install" install
step "embedded tests (QEMU)" bash scripts/embedded-tests.sh
step "size report" bash scripts/size-report.sh
step "test suite on wasm32-wasip1" wasi_tests
step "test suite on i686" i686_tests
step "miri: host and s390x" miri_both

echo "::: targets: step times"
printf '%s\n' "${timings[@]}"
