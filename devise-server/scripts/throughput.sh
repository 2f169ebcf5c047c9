#!/usr/bin/env bash
# Request throughput of devise_server builds on SQLite and PostgreSQL, measured with
# devise_load in one run, the builds interleaved so that a noisy machine weighs on each
# alike:
#
#   bash scripts/with-postgres.sh bash devise-server/scripts/throughput.sh [OTHER_BIN ...]
#
# Each binary (this tree's release build first, then the others given) serves a fresh
# SQLite file and a fresh PostgreSQL schema (ROTAUTH_TEST_DATABASE_URL, which
# with-postgres.sh sets; without it only SQLite runs) while devise_load runs 50 clients x
# 200 requests (`--clients`, `--requests` through LOAD_FLAGS), ROUNDS times (2). With the
# default 5 s batch window a client's requests inside a window are batch members (reads);
# SERVER_FLAGS="--batch-window-ms 0" makes every request rotate (a write each). Prints one
# line per run and the median requests per second per binary and database.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
cargo build --release -q -p devise-server --bin devise_server --bin devise_load
bins=("$root/target/release/devise_server" "$@")
load="$root/target/release/devise_load"
rounds="${ROUNDS:-2}"
# shellcheck disable=SC2206
load_flags=(${LOAD_FLAGS:---clients 50 --requests 200})
# shellcheck source=devise-server/scripts/server.sh
source "$root/devise-server/scripts/server.sh"

databases=(sqlite)
if [ -n "${ROTAUTH_TEST_DATABASE_URL:-}" ]; then databases+=(postgres); fi

# Sign-ups are not what is measured: cheap hashing, no throttling. The per address and
# email quota goes by its former name, which older builds given to compare know too.
flags=(--quiet --insecure-fast-hashing --throttle-per-address 0 --throttle-per-account 0)
# shellcheck disable=SC2206
flags+=(${SERVER_FLAGS:-})

run_one() { # BIN DATABASE LABEL
    local bin="$1" database="$2" label="$3" db_flags
    case "$database" in
        sqlite) db_flags=(--db "$work/$label.sqlite3") ;;
        postgres)
            # A fresh schema per run: both builds create their tables from nothing.
            psql -q "$ROTAUTH_TEST_DATABASE_URL" -c \
                "DROP TABLE IF EXISTS sessions, rotauth_sessions, rotauth_user_epochs, users CASCADE" >/dev/null
            db_flags=(--database-url "$ROTAUTH_TEST_DATABASE_URL") ;;
    esac
    start_server "$bin" "${flags[@]}" "${db_flags[@]}"
    "$load" --addr "$addr" "${load_flags[@]}" >"$work/load" 2>&1
    stop_server
    local line rps
    line="$(grep ' req/s; ' "$work/load" | head -n 1)"
    rps="$(sed -n 's/.*: \([0-9]*\) req\/s;.*/\1/p' <<<"$line")"
    if [ -z "$rps" ] || ! grep -q "401: 0, 5xx: 0, failed: 0;" <<<"$line"; then
        cat "$work/load" >&2
        echo "$label: the load did not complete with every request served" >&2
        exit 1
    fi
    echo "$label $database round $round: $line"
    echo "$rps" >>"$work/$label-$database"
}

for round in $(seq 1 "$rounds"); do
    for database in "${databases[@]}"; do
        for i in "${!bins[@]}"; do
            run_one "${bins[$i]}" "$database" "bin$i"
        done
    done
done

echo "== median requests/s (bin0 = this tree)"
for database in "${databases[@]}"; do
    for i in "${!bins[@]}"; do
        median="$(sort -n "$work/bin$i-$database" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')"
        echo "$database bin$i ${bins[$i]}: $median"
    done
done
