#!/usr/bin/env bash
# Flash, static RAM and stack that rotauth costs a Cortex-M firmware.
#
# Builds `size/`'s two release firmwares for each row below: `baseline` (runtime, output,
# stack painter, RNG) and `sign_in_decide` (the same plus a keyring, sign-in and decisions),
# measures both with rustup's `llvm-size`, and runs `sign_in_decide` under QEMU, where it
# paints the stack and reports the deepest use of sign-in and of one decision. rotauth's
# cost is the difference of the two firmwares. Also checks that the firmware holds no
# floating-point and no atomic (exclusive-access) instructions.
#
# Prints a Markdown table; fails if a firmware does not build, run or pass its own checks.
# Usage: scripts/size-report.sh [--quick]   (--quick: thumbv7em, default and compact only)
set -euo pipefail
cd "$(dirname "$0")/../size"

bin_dir=$(echo "$(rustc --print sysroot)"/lib/rustlib/*/bin)
llvm_size=$bin_dir/llvm-size
llvm_objdump=$bin_dir/llvm-objdump
if [ ! -x "$llvm_size" ]; then
  echo "llvm-size not found: rustup component add llvm-tools" >&2
  exit 1
fi

# target opt-level backend
rows=(
  "thumbv7em-none-eabihf s default"
  "thumbv7em-none-eabihf s compact"
)
if [ "${1:-}" != "--quick" ]; then
  rows+=(
    "thumbv7em-none-eabihf z default"
    "thumbv7em-none-eabihf z compact"
    "thumbv6m-none-eabi s default"
    "thumbv6m-none-eabi s compact"
  )
fi

# `text data bss` of a firmware, in bytes.
sizes() {
  "$llvm_size" -B "$1" | awk 'NR == 2 { print $1, $2, $3 }'
}

qemu_for() {
  case $1 in
    thumbv6m-*) echo "qemu-system-arm -machine microbit" ;;
    *) echo "qemu-system-arm -machine mps2-an386 -cpu cortex-m4" ;;
  esac
}

table="| target | opt-level | sha2 backend | flash | static RAM | stack: sign-in | stack: one decision (worst) |
|---|---|---|---|---|---|---|"

for row in "${rows[@]}"; do
  read -r target opt backend <<<"$row"
  dir=target/size-$opt-$backend
  flags=()
  if [ "$backend" = compact ]; then
    # sha2's software backend with its round loops rolled up (sha2 0.11 `sha2_backend_soft`).
    flags=(--cfg 'sha2_backend_soft="compact"')
  fi
  RUSTFLAGS="${flags[*]}" CARGO_TARGET_DIR=$dir cargo build --quiet --release \
    --target "$target" --config "profile.release.opt-level=\"$opt\""
  out=$dir/$target/release
  read -r base_text base_data base_bss < <(sizes "$out/baseline")
  read -r full_text full_data full_bss < <(sizes "$out/sign_in_decide")
  # Initialised data is stored in flash and copied to RAM at boot: it counts for both.
  flash=$(((full_text + full_data) - (base_text + base_data)))
  ram=$(((full_data + full_bss) - (base_data + base_bss)))

  # The firmware measures its own stack use and exits non-zero if a decision is wrong.
  # shellcheck disable=SC2046
  report=$(timeout --kill-after=5 120 $(qemu_for "$target") \
    -semihosting-config enable=on,target=native -nographic -monitor none -serial none \
    -kernel "$out/sign_in_decide")
  value() { awk -v k="$1" '$1 == k { print $2 }' <<<"$report"; }
  stack_sign_in=$(value stack_sign_in)
  stack_decide=$(value stack_decide)
  if [ -z "$stack_sign_in" ] || [ -z "$stack_decide" ]; then
    echo "no stack figures from $target $opt $backend: $report" >&2
    exit 1
  fi

  # No floating point and no atomics: the decision needs neither, so neither may appear.
  forbidden=$("$llvm_objdump" -d --no-show-raw-insn "$out/sign_in_decide" |
    grep -cE '^\s+[0-9a-f]+:\s+(v[a-z0-9.]+|ldrex[bhd]?|strex[bhd]?|ldaex|stlex)\s' || true)
  if [ "$forbidden" != 0 ]; then
    echo "$target $opt $backend: $forbidden floating-point or exclusive-access instructions" >&2
    exit 1
  fi

  echo "$target opt-level=$opt sha2=$backend: baseline text=$base_text data=$base_data" \
    "bss=$base_bss; sign_in_decide text=$full_text data=$full_data bss=$full_bss;" \
    "$(tr '\n' ' ' <<<"$report")" >&2
  kib=$(awk -v b="$flash" 'BEGIN { printf "%.1f", b / 1024 }')
  table+="
| \`$target\` | \`$opt\` | $backend | $flash B ($kib KiB) | $ram B | $stack_sign_in B | $stack_decide B |"
done

echo "$table"
