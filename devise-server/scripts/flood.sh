#!/usr/bin/env bash
# Abuse measurements of devise_server on 127.0.0.1, each bounded and stopping by itself:
#
#   bash devise-server/scripts/flood.sh            # release build (argon2 at its real cost)
#   PROFILE=debug bash devise-server/scripts/flood.sh
#   FLOOD_BEFORE=1 bash devise-server/scripts/flood.sh   # also the unbounded configuration
#
# 1. Sign-in flood: 3 rounds of 200 concurrent sign-ins with unknown emails while a
#    signed-in client keeps sending requests: the server's peak memory (VmHWM) and thread
#    count, and the client's p99 — with the defaults (hash permits = cores, throttling per
#    address and per address and email), and with throttling off (the hash permits alone
#    bound the memory). FLOOD_BEFORE=1 adds one round with 200 permits and no throttling,
#    which is how the server behaved before the permits (expect gigabytes).
# 2. Slow connections: 20 000 connections that send half a request head and stop, while a
#    real request must be answered within 1 s; then the header-read timeout closes them.
#    They are held by several processes of 5 000, so no process needs more descriptors
#    than a container allows; the script raises its own limit where it may.
#
# Each phase starts its own server (:memory: database, port 0) and stops it by its PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
profile="${PROFILE:-release}"

# 20 000 connections are 20 000 descriptors on each side (root may raise the hard limit).
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"

if [ "$profile" = release ]; then
    cargo build --release -q -p devise-server --bin devise_server --bin devise_flood
else
    cargo build -q -p devise-server --bin devise_server --bin devise_flood
fi
bin="$root/target/$profile"
# shellcheck source=devise-server/scripts/server.sh
source "$root/devise-server/scripts/server.sh"

# flood_server FLAGS...: a server on a private in-memory database. FLOOD_SERVER_FLAGS:
# extra flags for every server started here (CI passes --insecure-fast-hashing with a
# debug build; the figures come from release runs).
flood_server() {
    # shellcheck disable=SC2086
    start_server "$bin/devise_server" --db :memory: --quiet ${FLOOD_SERVER_FLAGS:-} "$@"
}

start=$SECONDS
echo "== sign-in flood, defaults (hash permits = $(nproc) cores, 60/min per address, 10/min per address and email)"
flood_server
"$bin/devise_flood" sign-in --addr "$addr" --pid "$server_pid" --concurrency 200 --rounds 3
stop_server

echo "== sign-in flood, throttling off: only the hash permits bound the work"
flood_server --throttle-per-address 0 --throttle-per-address-account 0
"$bin/devise_flood" sign-in --addr "$addr" --pid "$server_pid" --concurrency 200 --rounds 3
stop_server

if [ "${FLOOD_BEFORE:-0}" = 1 ]; then
    echo "== sign-in flood, as before: 200 hashes at once, no throttling"
    flood_server --throttle-per-address 0 --throttle-per-address-account 0 --concurrent-hashes 200
    "$bin/devise_flood" sign-in --addr "$addr" --pid "$server_pid" --concurrency 200 --rounds 1
    stop_server
fi

# The header-read timeout is raised to 30 s here so that all 20 000 are open at once when
# the real request is timed (opening them takes longer than the default 10 s); the
# server's connection limit sits below its open-file limit, and when it is reached the
# connection that has waited longest for a request head makes room.
echo "== 20 000 slow connections (header-read timeout 30 s, open-file limit $(ulimit -n))"
flood_server --header-read-timeout-ms 30000
"$bin/devise_flood" slow --addr "$addr" --pid "$server_pid" --connections 20000 --wait-close-secs 45
stop_server
echo "flood.sh: done in $((SECONDS - start)) s"
