#!/usr/bin/env bash
# Runs embedded-tests/ under QEMU on both emulated boards: the MPS2 AN386 (Cortex-M4F,
# thumbv7em-none-eabihf) and the micro:bit (Cortex-M0, thumbv6m-none-eabi). Then proves
# that a failed check, a panic and a HardFault each make the run exit non-zero, by
# building the firmware with one injected (ROTAUTH_EMBEDDED_INJECT, read at build time).
set -euo pipefail
cd "$(dirname "$0")/../embedded-tests"

targets=(thumbv7em-none-eabihf thumbv6m-none-eabi)

for target in "${targets[@]}"; do
  echo "--- embedded tests on $target"
  cargo run --quiet --target "$target"
done

for target in "${targets[@]}"; do
  for fault in fail panic hardfault; do
    if output=$(ROTAUTH_EMBEDDED_INJECT=$fault cargo run --quiet --target "$target" 2>&1); then
      echo "$output"
      echo "an injected $fault on $target exited 0: the runner would hide failures" >&2
      exit 1
    fi
    if ! grep -q "^0 passed, 1 failed$" <<<"$output"; then
      echo "$output"
      echo "an injected $fault on $target did not report '0 passed, 1 failed'" >&2
      exit 1
    fi
    echo "injected $fault on $target: exited non-zero, as it must"
  done
done
